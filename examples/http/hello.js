// A Workers-style HTTP function: nex run examples/http/hello.js --http-path /hello
export default {
  async fetch(request, env, ctx) {
    const url = new URL(request.url);
    return Response.json({ hello: url.searchParams.get("name"), path: url.pathname });
  },
};
