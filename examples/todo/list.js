// Lists every todo item. The items live in the bucket of the `create` workload (a workload's default
// bucket is named after it), which kv.bucket() opens from any workload of the same namespace. An async
// function with the awaitable host services (hostServices.async), so it reads all items at once rather
// than one after the other.
//   npx nex run examples/todo/list.js --trigger-subject todo.list
//   npx nex req todo.list ''
(async function () {
  const todos = this.hostServices.async.kv.bucket("create");
  const ids = await todos.keys();
  const items = await Promise.all(ids.map((id) => todos.getJSON(id)));
  return items.filter((todo) => todo !== null);
});
