// Creates a todo item: the payload is JSON with an id; it is stored in this workload's key-value bucket.
//   npx nex run examples/todo/create.js --trigger-subject todo.create
//   npx nex req todo.create '{"id":"1","title":"milk"}'
(subject, payload) => {
  let todo;
  try {
    todo = JSON.parse(new TextDecoder().decode(payload));
  } catch (err) {
    return { status: "failed", error: `payload is not JSON: ${err.message}` };
  }
  if (todo === null || typeof todo !== "object" || typeof todo.id !== "string" || todo.id === "") {
    return { status: "failed", error: "a todo needs a string id" };
  }
  this.hostServices.kv.set(todo.id, payload);
  return { id: todo.id, status: "success" };
};
