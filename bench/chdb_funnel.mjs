// The peer figure for bench/funnel.sh: ClickHouse's windowFunnel (chdb,
// ClickHouse 26.7.2 embedded) on the same events, max_threads = 1.
//
//   node bench/chdb_funnel.mjs CHDB_DIR EVENTS.csv RUNS
//
// EVENTS.csv: lead_id, ts (microseconds since the epoch), kind.  The events
// are loaded once into a Memory table; the funnel (3 steps, 30 days, the
// step rows only, as bench/funnel.sh's funnel) and the grouping alone are
// timed, best of RUNS, with the engine's own elapsed time.  Prints
// "clickhouse_funnel MS", "clickhouse_group_steps MS", "clickhouse_sequence MS"
// and the leads per level, for the agreement check.
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const [dir, csv, runsArg] = process.argv.slice(2);
const { Session } = await import(pathToFileURL(join(dir, 'node_modules/chdb/index.js')).href);
const runs = Number(runsArg || 2);
const s = new Session();
try {
	s.query(`CREATE TABLE ev (lead_id UInt64, ts UInt64, kind UInt8) ENGINE = Memory`);
	s.query(`INSERT INTO ev SELECT * FROM file('${csv}', CSV, 'lead_id UInt64, ts UInt64, kind UInt8')`);
	const time = (sql) => {
		let best = Infinity;
		for (let r = 0; r < runs; r++) {
			const t0 = process.hrtime.bigint();
			// every output column is consumed (a count() alone lets the
			// planner drop the aggregate)
			s.query(`SELECT sum(cityHash64(*)) FROM (${sql}) SETTINGS max_threads = 1`, 'TSVRaw');
			best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e6);
		}
		return best;
	};
	const funnel = `SELECT lead_id, windowFunnel(2592000000000)(ts, kind = 1, kind = 2, kind = 3) AS level
	                  FROM ev WHERE kind IN (1, 2, 3) GROUP BY lead_id`;
	const seq = `SELECT lead_id, sequenceMatch('(?1)(?t<=2592000000000)(?2).*(?3)')(ts, kind = 1, kind = 2, kind = 3) AS m
	               FROM ev WHERE kind IN (1, 2, 3) GROUP BY lead_id`;
	console.log(`clickhouse_group_steps ${time('SELECT lead_id, count() FROM ev WHERE kind IN (1, 2, 3) GROUP BY lead_id').toFixed(0)}`);
	console.log(`clickhouse_funnel ${time(funnel).toFixed(0)}`);
	console.log(`clickhouse_sequence_match ${time(seq).toFixed(0)}`);
	const levels = s.query(`SELECT level, count() FROM (${funnel}) GROUP BY level ORDER BY level SETTINGS max_threads = 1`, 'TSVRaw');
	console.log(`clickhouse_levels ${levels.trim().split('\n').map((l) => l.replace('\t', ':')).join(' ')}`);
	const m = s.query(`SELECT countIf(m) FROM (${seq}) SETTINGS max_threads = 1`, 'TSVRaw');
	console.log(`clickhouse_sequence_matches ${m.trim()}`);
} finally {
	s.cleanup();
}
