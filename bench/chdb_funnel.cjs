// The funnel of bench/funnel.sh in ClickHouse (chdb, embedded), for the bench
// table: node bench/chdb_funnel.cjs CHDB_DIR EVENTS_CSV RUNS
// Loads the events (lead_id, ts in microseconds since 1970, kind) into a
// MergeTree table once, then
// times, best of RUNS, single thread (max_threads = 1), every output row
// consumed by count():
//   group   SELECT lead_id, count() ... WHERE kind IN (1, 2, 3) GROUP BY lead_id
//   funnel  SELECT lead_id, windowFunnel(30 days)(ts, kind = 1, kind = 2, kind = 3) ... GROUP BY lead_id
// and prints "chdb_group_ms N", "chdb_funnel_ms N" and the leads per level.
// Never installs chdb: bench/funnel.sh runs this only when it is there.
'use strict';
const path = require('path');
const fs = require('fs');
const os = require('os');

const [chdbDir, csv, runsArg] = process.argv.slice(2);
const { Session } = require(path.join(chdbDir, 'node_modules', 'chdb'));
const runs = Number(runsArg || 2);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'leadmgmt-chdb-'));
const session = new Session(dir);
try {
	session.query('CREATE TABLE ev (lead_id UInt64, ts UInt64, kind UInt8) ENGINE = MergeTree ORDER BY tuple()');
	session.query(`INSERT INTO ev SELECT * FROM file('${csv}', CSV, 'lead_id UInt64, ts UInt64, kind UInt8')`);
	const settings = ' SETTINGS max_threads = 1';
	const queries = {
		group: 'SELECT count() FROM (SELECT lead_id, count() FROM ev WHERE kind IN (1, 2, 3) GROUP BY lead_id)',
		funnel: 'SELECT count() FROM (SELECT lead_id, windowFunnel(2592000000000)(ts, kind = 1, kind = 2, kind = 3) AS level ' +
			'FROM ev WHERE kind IN (1, 2, 3) GROUP BY lead_id)',
	};
	for (const [name, q] of Object.entries(queries)) {
		let best = Infinity;
		for (let r = 0; r < runs; r++) {
			const t0 = process.hrtime.bigint();
			session.query(q + settings, 'CSV');
			const ms = Number(process.hrtime.bigint() - t0) / 1e6;
			best = Math.min(best, ms);
		}
		console.log(`chdb_${name}_ms ${best.toFixed(0)}`);
	}
	const levels = session.query('SELECT level, count() FROM (SELECT lead_id, windowFunnel(2592000000000)(ts, kind = 1, kind = 2, kind = 3) AS level ' +
		'FROM ev WHERE kind IN (1, 2, 3) GROUP BY lead_id) GROUP BY level ORDER BY level' + settings, 'CSV');
	console.log('chdb_levels ' + levels.trim().replace(/\n/g, ' '));
} finally {
	session.cleanup();
	fs.rmSync(dir, { recursive: true, force: true });
}
