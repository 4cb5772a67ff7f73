// Lists every todo item. The items live in the bucket of the `create` workload (a workload's default
// bucket is named after it), which kv.bucket() opens from any workload of the same namespace.
//   npx nex run examples/todo/list.js --trigger-subject todo.list
//   npx nex req todo.list ''
() => {
  const todos = this.hostServices.kv.bucket("create");
  return todos.keys().map((id) => todos.getJSON(id)).filter((todo) => todo !== null);
};
