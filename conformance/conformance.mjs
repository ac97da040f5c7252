// Conformance of leadmgmt's behavioural aggregates with the real ClickHouse
// engine (chdb, which embeds ClickHouse).  Run by conformance/run.sh inside a
// throwaway cluster (psql reaches it through the PG* environment).
//
//   node conformance.mjs CHDB_DIR WORKDIR
//
// Random groups with a fixed seed go through both engines; every difference
// is printed (per mode, step list, window, pattern) and counted; the exit
// status is 0 only when there is none.  Rows reach both engines in the same
// order: ClickHouse reads the CSV file with one thread, PostgreSQL aggregates
// with ORDER BY rn (row order only decides ties under strict_once).
import { execFileSync } from 'node:child_process';
import { writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { funnelCases } from './cases00632.mjs';

const [chdbDir, work] = process.argv.slice(2);
const { query } = await import(pathToFileURL(join(chdbDir, 'node_modules/chdb/index.js')).href);

// ---------------------------------------------------------------- helpers
function mulberry32(seed) {
	return function () {
		seed |= 0; seed = (seed + 0x6D2B79F5) | 0;
		let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
		t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
		return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
	};
}
const rnd = mulberry32(20260717);
const pick = (a) => a[Math.floor(rnd() * a.length)];
const int = (lo, hi) => lo + Math.floor(rnd() * (hi - lo + 1));

function ch(sql) {
	// one thread, and the file read in order (no parallel parsing): rows reach
	// the aggregates in file order, as they reach PostgreSQL's (ORDER BY rn)
	return query(sql + ' SETTINGS max_threads = 1, input_format_parallel_parsing = 0', 'TSVRaw');
}
function pg(sql) {
	const f = join(work, 'q.sql');
	writeFileSync(f, sql);
	return execFileSync('psql', ['-X', '-q', '-At', '-F', '\t', '-v', 'ON_ERROR_STOP=1', '-f', f],
		{ encoding: 'utf8', maxBuffer: 1 << 30 });
}
// rows "g\tv1\tv2..." -> Map g -> [v...]
function table(text) {
	const m = new Map();
	for (const line of text.split('\n')) {
		if (line === '') continue;
		const f = line.split('\t');
		m.set(f[0], f.slice(1));
	}
	return m;
}

let total = 0;
const summary = [];
// one check per mode x step list x window, pattern, condition list and case:
// it passes when both engines agree on every group
let checksPassed = 0;
let checksFailed = 0;
// a section that cannot run (an engine error) counts as a failure
function section(name, fn) {
	try {
		fn();
	} catch (e) {
		const msg = String(e.stderr || e.message || e).split('\n').filter((l) => l).slice(0, 4).join(' | ');
		console.log(`  ${name}: ERROR ${msg}`);
		total += 1;
		checksFailed++;
		summary.push([name, 0, 'error']);
	}
}

// compare column i of two tables under label; print the first examples
function compare(label, chT, pgT, i, describe) {
	let diff = 0, n = 0;
	const examples = [];
	for (const [g, v] of chT) {
		n++;
		const p = pgT.get(g);
		const pv = p === undefined ? '(missing)' : p[i];
		if (pv !== v[i]) {
			diff++;
			if (examples.length < 2) examples.push(`group ${g}: clickhouse ${v[i]}, leadmgmt ${pv}` + (describe ? ` [${describe(g)}]` : ''));
		}
	}
	if (pgT.size !== chT.size) diff += Math.abs(pgT.size - chT.size);
	total += diff;
	if (diff === 0 && n > 0) checksPassed++;
	else checksFailed++;
	return { label, n, diff, examples };
}

// ---------------------------------------------------------------- funnel data
// >= 2,000 groups of 0-14 events: ties (gap 0), repeats, gaps, kinds a-f
// (f matches no step: strict_order sees it)
const fRows = [];
const fGroups = new Map();
for (let g = 1; g <= 2400; g++) {
	const n = int(1, 14);
	let t = int(0, 20);
	const evs = [];
	for (let i = 0; i < n; i++) {
		t += pick([0, 0, 1, 1, 2, 3, 5, 8, 13]);
		evs.push([t, pick(['a', 'a', 'b', 'b', 'c', 'c', 'd', 'e', 'f'])]);
	}
	// within one timestamp the rows are in random order
	for (let i = evs.length - 1; i > 0; i--) {
		const j = int(0, i);
		if (evs[i][0] === evs[j][0]) [evs[i], evs[j]] = [evs[j], evs[i]];
	}
	fGroups.set(String(g), evs.map(([t, e]) => `${e}@${t}`).join(' '));
	for (const [t2, e] of evs) fRows.push([g, t2, e, fRows.length + 1]);
}
writeFileSync(join(work, 'funnel.csv'), fRows.map((r) => r.join(',')).join('\n') + '\n');
pg(`DROP TABLE IF EXISTS f; CREATE TABLE f (g int, t bigint, e text, rn int);
\\copy f FROM '${join(work, 'funnel.csv')}' CSV
CREATE INDEX ON f (g); ANALYZE f;`);

const FLAGS = ['strict_deduplication', 'strict_order', 'strict_increase', 'strict_once', 'allow_reentry'];
const modes = [];
for (let m = 0; m < 32; m++) {
	const fl = FLAGS.filter((_, i) => m & (1 << i));
	if (fl.includes('allow_reentry') && !fl.includes('strict_order')) continue;
	modes.push(fl);
}
// steps: each a set of kinds (a row may match several steps)
const stepLists = [
	[['a'], ['b'], ['c']],
	[['a'], ['a'], ['b']],
	[['a'], ['b'], ['a'], ['c']],
	[['a', 'b'], ['b', 'c'], ['c']],
	[['a'], ['b', 'c'], ['c', 'd'], ['d', 'e'], ['e']],
	[['a', 'b', 'c', 'd', 'e']],
];
const windows = [0, 3, 10];
const stepText = (s) => s.map((k) => k.join('|')).join(',');
const chCond = (k) => k.length === 1 ? `e = '${k[0]}'` : `e IN (${k.map((x) => `'${x}'`).join(',')})`;
const pgCond = chCond;

console.log(`window_funnel: ${fGroups.size} groups, ${fRows.length} rows, ${modes.length} modes x ${stepLists.length} step lists x ${windows.length} windows`);
const perMode = new Map();
for (const steps of stepLists) {
	for (const w of windows) {
		const chCols = modes.map((m) => `windowFunnel(${[w, ...m.map((x) => `'${x}'`)].join(', ')})(t, ${steps.map(chCond).join(', ')})`);
		const chT = table(ch(`SELECT g, ${chCols.join(', ')} FROM file('${join(work, 'funnel.csv')}', CSV, 'g UInt32, t UInt32, e String, rn UInt32') GROUP BY g ORDER BY g`));
		const pgCols = modes.map((m) => `leadmgmt.window_funnel(${w} * interval '1 second', '${m.join(',')}', to_timestamp(t), ${steps.map(pgCond).join(', ')} ORDER BY rn)`);
		const timesCols = modes.map((m) => `cardinality(leadmgmt.funnel_step_times(${w} * interval '1 second', '${m.join(',')}', to_timestamp(t), ${steps.map(pgCond).join(', ')} ORDER BY rn))`);
		const pgT = table(pg(`SELECT g, ${pgCols.join(', ')} FROM f GROUP BY g ORDER BY g`));
		const pgTimes = table(pg(`SELECT g, ${timesCols.join(', ')} FROM f GROUP BY g ORDER BY g`));
		modes.forEach((m, i) => {
			const key = m.join(',') || '(default)';
			const r = compare(`${key} steps ${stepText(steps)} window ${w}`, chT, pgT, i, (g) => fGroups.get(g));
			const rt = compare(`${key} funnel_step_times steps ${stepText(steps)} window ${w}`, chT, pgTimes, i, (g) => fGroups.get(g));
			const acc = perMode.get(key) || { n: 0, diff: 0, tdiff: 0, examples: [] };
			acc.n += r.n; acc.diff += r.diff; acc.tdiff += rt.diff;
			for (const e of [...r.examples, ...rt.examples.map((x) => 'funnel_step_times length: ' + x)])
				if (acc.examples.length < 3) acc.examples.push(`steps ${stepText(steps)} window ${w}: ${e}`);
			perMode.set(key, acc);
		});
	}
}
let funnelDiff = 0, timesDiff = 0, funnelN = 0;
for (const [key, acc] of perMode) {
	funnelDiff += acc.diff; timesDiff += acc.tdiff; funnelN += acc.n;
	console.log(`  ${key.padEnd(72)} ${String(acc.n).padStart(6)} levels, ${acc.diff} differ; funnel_step_times lengths: ${acc.tdiff} differ`);
	for (const e of acc.examples) console.log(`      ${e}`);
}
summary.push(['window_funnel', funnelN, funnelDiff], ['funnel_step_times', funnelN, timesDiff]);

// ---------------------------------------------------------------- sequences
// >= 1,500 groups with strictly increasing times; kinds a-e; e matches no
// condition (skipped); conditions: a, b, c, c or d
const sRows = [];
const sGroups = new Map();
for (let g = 1; g <= 1800; g++) {
	const n = int(1, 16);
	let t = int(0, 50);
	const evs = [];
	for (let i = 0; i < n; i++) {
		t += pick([1, 1, 2, 2, 3, 4, 5, 7, 10, 20]);
		evs.push([t, pick(['a', 'a', 'b', 'b', 'c', 'd', 'e'])]);
	}
	sGroups.set(String(g), evs.map(([t2, e]) => `${e}@${t2}`).join(' '));
	for (const [t2, e] of evs) sRows.push([g, t2, e, sRows.length + 1]);
}
writeFileSync(join(work, 'seq.csv'), sRows.map((r) => r.join(',')).join('\n') + '\n');
pg(`DROP TABLE IF EXISTS s; CREATE TABLE s (g int, t bigint, e text, rn int);
\\copy s FROM '${join(work, 'seq.csv')}' CSV
ANALYZE s;`);
const conds = [`e = 'a'`, `e = 'b'`, `e = 'c'`, `e IN ('c', 'd')`];
const patterns = [
	'(?1)', '(?1)(?2)', '(?1).*(?2)', '(?1)(?2)(?3)', '(?1).*(?2).*(?3)', '(?1).(?2)', '(?1)..(?3)',
	'(?2)(?1)', '(?1)(?1)', '(?1).*(?1)', '.*(?1)(?2)', '(?1).*', '(?4)(?4)', '(?3).*(?4)', '(?1)(?2).*(?4)',
	'(?1)(?t<=5)(?2)', '(?1)(?t<5)(?2)', '(?1)(?t>=3)(?2)', '(?1)(?t>3)(?2)', '(?1)(?t==2)(?2)',
	'(?1)(?t<=10)(?2)(?t<=10)(?3)', '(?1)(?t>2)(?2)(?t<20)(?3)', '(?1).*(?t<=4)(?2)', '(?1)(?t<=7)(?1)',
	'(?1)(?t>=0)(?2)', '(?2)(?t<=3).(?t<=3)(?3)', '(?1)(?t<100)', '(?1)(?t==3)(?2)(?t==3)(?3)',
];
console.log(`sequence_match / sequence_count: ${sGroups.size} groups, ${sRows.length} rows, ${patterns.length} patterns`);
section('sequences', () => {
	const chCols = [];
	const pgCols = [];
	for (const p of patterns) {
		chCols.push(`sequenceMatch('${p}')(t, ${conds.join(', ')})`, `sequenceCount('${p}')(t, ${conds.join(', ')})`);
		pgCols.push(`leadmgmt.sequence_match('${p}', to_timestamp(t), ${conds.join(', ')} ORDER BY rn)::int`,
			`leadmgmt.sequence_count('${p}', to_timestamp(t), ${conds.join(', ')} ORDER BY rn)`);
	}
	const chT = table(ch(`SELECT g, ${chCols.join(', ')} FROM file('${join(work, 'seq.csv')}', CSV, 'g UInt32, t UInt32, e String, rn UInt32') GROUP BY g ORDER BY g`));
	const pgT = table(pg(`SELECT g, ${pgCols.join(', ')} FROM s GROUP BY g ORDER BY g`));
	let md = 0, cd = 0, n = 0;
	patterns.forEach((p, i) => {
		const a = compare(`sequence_match ${p}`, chT, pgT, 2 * i, (g) => sGroups.get(g));
		const b = compare(`sequence_count ${p}`, chT, pgT, 2 * i + 1, (g) => sGroups.get(g));
		const hits = [...chT.values()].filter((v) => v[2 * i] === '1').length;
		console.log(`  ${p.padEnd(34)} match: ${a.diff} differ (${hits} of ${a.n} groups match); count: ${b.diff} differ`);
		for (const e of [...a.examples, ...b.examples]) console.log(`      ${e}`);
		md += a.diff; cd += b.diff; n += a.n;
	});
	summary.push(['sequence_match', n, md], ['sequence_count', n, cd]);
});

// ---------------------------------------------------------------- retention
section('retention', () => {
	const sets = [conds, [conds[1], conds[0], conds[2]], [conds[3], conds[2], conds[1], conds[0]], [conds[2], conds[3]]];
	let rd = 0, n = 0;
	console.log(`retention: ${sGroups.size} groups (the sequence data), ${sets.length} condition lists`);
	sets.forEach((cs) => {
		const chT = table(ch(`SELECT g, arrayStringConcat(arrayMap(x -> toString(x), retention(${cs.join(', ')})), ',') FROM file('${join(work, 'seq.csv')}', CSV, 'g UInt32, t UInt32, e String, rn UInt32') GROUP BY g ORDER BY g`));
		const pgT = table(pg(`SELECT g, array_to_string(leadmgmt.retention(${cs.join(', ')})::int[], ',') FROM s GROUP BY g ORDER BY g`));
		const r = compare(`retention(${cs.join(', ')})`, chT, pgT, 0, (g) => sGroups.get(g));
		console.log(`  retention(${cs.join(', ')}): ${r.diff} differ`);
		for (const e of r.examples) console.log(`      ${e}`);
		rd += r.diff; n += r.n;
	});
	summary.push(['retention', n, rd]);
});

// ---------------------------------------------------------------- 00632 cases
section('00632 cases', () => {
	console.log('ported 00632 cases (test/sql/funnel.sql): the engine\'s answers, and where the old reference disagreed');
	let d = 0, n = 0, old = 0;
	for (const c of funnelCases) {
		const csv = join(work, 'case.csv');
		writeFileSync(csv, c.rows.map((r, i) => [r[0], r[1], r[2], i + 1].join(',')).join('\n') + '\n');
		pg(`DROP TABLE IF EXISTS c; CREATE TABLE c (g int, t bigint, e text, rn int); \\copy c FROM '${csv}' CSV`);
		const params = [c.window, ...(c.mode ? c.mode.split(',').map((x) => `'${x.trim()}'`) : [])].join(', ');
		const chT = table(ch(`SELECT g, windowFunnel(${params})(t, ${c.steps.join(', ')}) FROM file('${csv}', CSV, 'g UInt32, t UInt32, e String, rn UInt32') GROUP BY g ORDER BY g`));
		const pgT = table(pg(`SELECT g, leadmgmt.window_funnel(${c.window} * interval '1 second', '${c.mode || ''}', to_timestamp(t), ${c.steps.join(', ')} ORDER BY rn) FROM c GROUP BY g ORDER BY g`));
		const got = [...chT.entries()].map(([g, v]) => `${g}:${v[0]}`).join(' ');
		const ref = Object.entries(c.reference).map(([g, v]) => `${g}:${v}`).join(' ');
		const r = compare(c.name, chT, pgT, 0);
		n += r.n; d += r.diff;
		const disagree = got !== ref;
		if (disagree) old++;
		console.log(`  ${c.name.padEnd(60)} engine ${got}${disagree ? `   OLD REFERENCE ${ref}` : ''}${r.diff ? `   LEADMGMT DIFFERS ${r.examples.join('; ')}` : ''}`);
	}
	console.log(`  ${old} of ${funnelCases.length} cases: the old .reference disagreed with ClickHouse 26.7.2`);
	summary.push(['00632 cases', n, d]);
});

console.log('');
console.log('aggregate            compared  differences');
for (const [name, n, d] of summary) console.log(`${name.padEnd(20)} ${String(n).padStart(9)}  ${d}`);
console.log(`conformance: ${total} differences`);
console.log(`${checksPassed} passed, ${checksFailed} failed`);
process.exit(total === 0 ? 0 : 1);
