// The smallest function: replies with what it was sent, and says so on its log feed.
//   npx nex run examples/echo/echo.js --trigger-subject echo
//   npx nex req echo 'hello'
(subject, payload) => {
  console.log(`echo on ${subject}: ${payload.length} bytes`);
  return payload;
};
