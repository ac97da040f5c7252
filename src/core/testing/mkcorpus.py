#!/usr/bin/env python3
"""Write the seed corpora for the libFuzzer targets: corpus/X/ for fuzz_X.c.

Each seed is a small input in the byte layout its target decodes (see the
header comment of fuzz_X.c), chosen to start the coverage-guided search at
the inputs the SQL functions really see: every funnel mode and attribution
model, typical and extreme timestamps and half-lives, valid score states,
e-mail addresses, phone numbers and company names as people type them.
libFuzzer mutates from there.  The seeds are committed; rerun this script
(python3 mkcorpus.py, from this directory) after changing a target's layout.
"""
import hashlib
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
I64_MAX = 2**63 - 1
I64_MIN = -2**63
DAY_US = 86400 * 10**6


def write(target, seeds):
    d = os.path.join(HERE, 'corpus', target)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    for s in seeds:
        if isinstance(s, str):
            s = s.encode('utf-8')
        # content-named like libFuzzer's own corpus files: no duplicates
        with open(os.path.join(d, hashlib.sha1(s).hexdigest()), 'wb') as f:
            f.write(s)


def attribution():
    # the model parser sees the whole input as text ...
    seeds = ['first_touch', 'last_touch', 'linear', 'u_shaped', 'w_shaped',
             'time_decay:7 days', 'time_decay:1 hour', 'time_decay:-1 day',
             'time_decay:', 'Linear', ' linear']
    # ... and the touch-set decoder: model, half-life byte, then pairs of
    # (time byte: 0xC0|1 = +inf, 0xC0 = -inf, else (b % 8) * 1000;
    #  touch byte: alphabet index, 0x80 = milestone)
    for model in range(7):
        for hl in (0x02, 0x07, 0x81):
            seeds.append(bytes([model, hl, 1, 5, 2, 6, 3, 0x85, 4, 7, 4, 7]))
    seeds.append(bytes([5, 2, 0xC0, 0x81, 0xC1, 0x82, 0, 0x83]))     # extremes
    seeds.append(bytes([6, 0x80]) + bytes([0, 1] * 100))             # many ties
    seeds.append(bytes([4, 3]) + bytes(range(2, 200)))
    return seeds


def decay():
    # int64 half-life, then records of int64 occurred_at (µs) + int16 points
    def rec(ts, p):
        return struct.pack('<qh', ts, p)
    seeds = []
    for hl in (7 * DAY_US, 30 * DAY_US, 1, 0, I64_MAX):
        body = b''.join(rec(t * DAY_US, p) for t, p in ((0, 5), (3, 10), (10, -2), (400, 100)))
        seeds.append(struct.pack('<q', hl) + body)
    seeds.append(struct.pack('<q', 7 * DAY_US) + rec(I64_MIN, 5) + rec(I64_MAX, 5) + rec(0, -32768))
    seeds.append(struct.pack('<q', 90 * DAY_US) + b''.join(rec(i * 3600 * 10**6, 32767) for i in range(50)))
    return seeds


def funnel():
    seeds = ['', 'strict_deduplication', 'strict_order', 'strict_increase',
             'strict_once', 'allow_reentry', 'strict_order,strict_once',
             'strict_deduplication, strict_increase', 'strict_order,,', 'bogus']
    # steps, flags, window byte (0x80 = huge), then events of
    # (time byte: 0xFF max, 0xFE min, else % 24; 16-bit step mask, 0x8000 inverts)
    for steps in (1, 3, 32, 0, 33):
        for flags in (0, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F):
            ev = bytes([0, 1, 0, 1, 2, 0, 2, 4, 0, 5, 1, 0, 6, 2, 0, 7, 4, 0])
            seeds.append(bytes([steps, flags, 5]) + ev)
    seeds.append(bytes([3, 0, 0x80, 0xFE, 1, 0, 0xFF, 2, 0, 0, 4, 0]))
    seeds.append(bytes([32, 0x10, 0x8F]) + bytes([3, 0xFF, 0xFF]) * 40)
    seeds.append(bytes([4, 0x02, 3]) + bytes([1, 1, 0, 1, 2, 0, 1, 4, 0, 1, 8, 0]) * 20)
    return seeds


def sequence():
    # byte 0: conditions - 1 (% 32), byte 1: pattern length (% 48), the
    # pattern, then events of (time step byte: 0xFF max, 0xFE min, else
    # (b % 8) s later; 16-bit condition mask, 0x8000 inverts)
    pats = ['(?1)(?2)', '(?1).*(?2)', '(?1)(?t<=5)(?2)', '(?1)(?t>=3)(?2)', '(?1).(?2)',
            '(?1).*(?1).*(?1)(?t>100)(?2)', '', '.*', '(?1)(?t==2)(?2)(?t<9)(?3)',
            '(?3)', '(?1', '(?t<1)(?t>2)']
    seeds = []
    ev = bytes([0, 1, 0, 1, 2, 0, 0, 4, 0, 2, 1, 0, 3, 2, 0, 1, 6, 0, 7, 1, 0])
    for p in pats:
        seeds.append(bytes([3, len(p)]) + p.encode() + ev)
    seeds.append(bytes([1, 8]) + b'(?1)(?2)' + bytes([0xFE, 1, 0, 0xFF, 2, 0]))
    seeds.append(bytes([31, 16]) + b'(?1).*(?1).*(?2)' + bytes([1, 1, 0]) * 200 + bytes([1, 2, 0]))
    return seeds


def logreg():
    # byte 0: p = b % 5, l2 = [0, 0, 1e-8, 1, 1e300, -1][(b / 5) % 6]; then
    # rows of one label byte and p feature bytes (b % 16: 0, 1e300, -1e-300,
    # 1e150, inf/NaN, else (b - 128) / 16)
    seeds = []
    for p in range(5):
        for l2 in range(6):
            rows = b''
            for i in range(24):
                label = 1 if (i * 7) % 5 < 2 else 0
                feats = bytes(((128 + 16 * label + 3 * i + 5 * j) & 0xF0) | 0x05 for j in range(p))
                rows += bytes([label]) + feats
            seeds.append(bytes([p + 5 * l2]) + rows)
    seeds.append(bytes([2]) + bytes([1, 0x81, 0x90, 0, 0x81, 0x90] * 10))   # separable
    seeds.append(bytes([1]) + bytes([1, 0x04, 0, 0x84, 1, 0x01, 0, 0x02]))  # NaN, inf, huge
    return seeds


def normalize():
    return [
        'Taro.Yamada+news@Example.CO.JP', 'ＴＡＲＯ＠ＥＸＡＭＰＬＥ．ＪＰ',
        'hana@example.com', '"quoted name"@example.com', 'a@b@c', '@', 'x@',
        '+81 3-1234-5678', '(03) 1234-5678', '０３－１２３４－５６７８',
        '+1 (415) 555-0100', '020 7946 0958', '+65 6123 4567', '090-1234-5678 ext. 12',
        '株式会社サクラ精機', '(株)ミドリ商事', '㈱ミドリ商事', '有限会社ひかり工業',
        'ＡＢＣ株式会社', 'ｶﾌﾞｼｷｶﾞｲｼｬ ｻｸﾗ', 'Acme Corp.', 'Umbrella Co., Ltd.',
        'Initech GmbH', 'Müller & Söhne KG', 'Ｇｌｏｂｅｘ　Ｉｎｃ．', 'Société Générale S.A.',
        '佐藤 太郎', 'Sato, Taro', 'が', 'ガ', 'ﾊﾟ', 'ｳﾞ', 'Ⅻ', '①', 'ﬁ', '\u00a0\u3000',
        'e\u0301', '\U0001F600', '',
    ]


def score_state():
    # layout of score_state.h: header, components, awards (little-endian)
    def state(components, awards):
        out = struct.pack('<BBHHH', 1, 0, len(components), len(awards), 0)
        for hl, value, ref in components:
            out += struct.pack('<qdq', hl, value, ref)
        for rule, last, times in awards:
            out += struct.pack('<qqii', rule, last, times, 0)
        return out
    return [
        state([], []),
        state([(7 * DAY_US, 12.5, 800 * DAY_US)], []),
        state([(0, 3.0, 0), (7 * DAY_US, 12.5, 800 * DAY_US), (90 * DAY_US, -4.0, I64_MIN)],
              [(1, 800 * DAY_US, 2), (17, I64_MAX, 1)]),
        state([(I64_MAX, float('inf'), I64_MAX)], [(I64_MIN, I64_MIN, -1)]),
        state([(7 * DAY_US, float('nan'), 0)], []),
        state([], [(i, i * DAY_US, i) for i in range(1, 20)]),
        # not sorted, duplicated: must be refused
        state([(7 * DAY_US, 1, 0), (1, 1, 0)], []),
        state([], [(3, 0, 1), (3, 0, 1)]),
        # the target also frames raw bytes behind a header: short bodies
        struct.pack('<qdq', 7 * DAY_US, 1.0, 0),
        bytes([1, 0, 1, 0]),
    ]


def percentile():
    # a 2-byte fraction, then (time int64, day int32, month int32) values
    def vals(frac, spans):
        return struct.pack('<H', frac) + b''.join(struct.pack('<qii', t, d, m) for t, d, m in spans)
    return [
        vals(32768, [(0, i, 0) for i in (10, 1, 3, 2)]),             # median of days
        vals(58982, [(i * 3600 * 10**6, 0, 0) for i in range(11)]),   # p90 of hours
        vals(0, [(0, 30, 0), (0, 0, 1), (DAY_US, -1, 0)]),            # equal lengths written differently
        vals(65535, [(I64_MAX, 2**31 - 1, 2**31 - 1), (I64_MIN, -2**31, -2**31)]),
        vals(32768, [(5, 0, 0)] * 9),                                 # all equal
    ]


def stage_conversions():
    # records of 10 bytes: lead (6), stage (1), time (3)
    def rec(lead, stage, t):
        return struct.pack('<Q', lead)[:6] + bytes([stage]) + struct.pack('<i', t)[:3]
    return [
        rec(1, 0, 10) + rec(1, 1, 20) + rec(2, 1, 10) + rec(2, 0, 20),
        b''.join(rec(l, s, l * 7 + s) for l in range(40) for s in range(5)),
        rec(2**47 - 1, 3, 0) + rec(0, 0, -5) + rec(2**47 - 1, 0, 5),
    ]


def import_replay():
    # header (lead count, link count, flags), 5 bytes per lead, 3 per link,
    # 4 per row (fuzz_import_replay.c, import_reference.h ref_decode)
    def lead(present, keys, current, attrs, shuffle=0):
        return bytes([present, keys, current, attrs, shuffle])

    def row(present, keys, sysattr=0, shuffle=0):
        return bytes([present, keys, sysattr, shuffle])
    e, p, c, n = 1, 1 << 2, 1 << 4, 1 << 6
    return [
        # one lead; rows matching it by e-mail, phone, company + name
        bytes([1, 0, 0]) + lead(0x07, e | c | n, 0x40, 1)
        + row(0x09, e | p) + row(0x08, 2 * p) + row(0x06, c | n, 0x10),
        # two leads sharing keys, stale stored keys, links to known and hidden leads
        bytes([2, 2, 0]) + lead(0x01, e | p, 2, 3) + lead(0x0b, e | p | n, 0x40, 0, 1)
        + bytes([0, 1, 0, 1, 2, 0x80]) + row(0x41, e, 0x05) + row(0x80, 0, 0x05, 1),
        # a list that builds its own leads, rows out of id order
        bytes([0, 0, 0]) + b''.join(row(0x0f, (i * 37) & 0xff, i & 0xff, i * 7 & 0xff) for i in range(40)),
        # duplicate ids; a failed allocation
        bytes([2, 0, 3]) + lead(1, e, 0x40, 0) + lead(1, e, 0x40, 0) + row(1, e, 0) + row(1, e, 0),
        bytes([1, 1, 4]) + lead(1, e, 0x40, 0) + bytes([1, 1, 0]) + row(1, e, 5) * 8,
    ]


if __name__ == '__main__':
    for name, fn in (('attribution', attribution), ('decay', decay), ('funnel', funnel),
                     ('logreg', logreg), ('normalize', normalize), ('score_state', score_state),
                     ('percentile', percentile), ('stage_conversions', stage_conversions),
                     ('sequence', sequence), ('import_replay', import_replay)):
        write(name, fn())
