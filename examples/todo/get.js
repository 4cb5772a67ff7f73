// Returns one todo item; the payload is its id.
//   npx nex run examples/todo/get.js --trigger-subject todo.get
//   npx nex req todo.get 1
(subject, payload) => {
  const id = new TextDecoder().decode(payload).trim();
  const todo = this.hostServices.kv.bucket("create").getJSON(id);
  return todo ?? { status: "failed", error: `no todo ${id}` };
};
