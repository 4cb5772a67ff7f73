// A card table as a long-running service: `nex run examples/service/table.js --service --env TABLE=t1`.
// A turn clock publishes on table.<TABLE>.turn; table.<TABLE>.join seats a player; table.<TABLE>.state
// answers the table; the hand count is kept in KV, so it survives a restart of the service.
let seats = [];
let turn = 0;
let hands = 0;

export default {
  start(ctx) {
    const table = `table.${ctx.env.TABLE ?? ctx.workload.name}`;
    hands = Number(ctx.hostServices.kv.getString(`${table}.hands`) ?? "0");
    setInterval(() => {
      turn = (turn + 1) % Math.max(1, seats.length);
      ctx.hostServices.messaging.publish(`${table}.turn`, seats[turn] ?? "nobody");
    }, Number(ctx.env.TURN_MS ?? 1000));
    ctx.subscribe(`${table}.join`, (subject, payload) => {
      const who = new TextDecoder().decode(payload);
      if (who === "") throw new Error("a player needs a name");
      if (seats.includes(who)) throw new Error(`${who} is seated already`);
      seats.push(who);
      return { seats };
    });
    ctx.subscribe(`${table}.deal`, () => {
      hands++;
      ctx.hostServices.kv.set(`${table}.hands`, String(hands));
      return { hand: hands, seats };
    });
    ctx.subscribe(`${table}.state`, () => ({ seats, turn: seats[turn] ?? null, hands }));
    console.log(`${table} open on node ${ctx.workload.node}`);
  },
  stop(ctx) {
    console.log(`table closing with ${seats.length} players`);
  },
};
