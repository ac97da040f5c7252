#!/usr/bin/env python3
"""Authoring aid: rewrite the ```text blocks of doc pages from real output.

Run inside a throwaway cluster, e.g.
    . scripts/env.sh; venv python3 scripts/docfill.py doc/stages.md
For every ```sql block, the output it adds is computed by running the page's
blocks up to it (same header as scripts/doctest.pl) and taking the new tail;
a ```text block after the sql block is replaced (or inserted when the block
prints something).  Review the diff before committing: this records what the
code does, not what it should do.
"""
import re
import subprocess
import sys

HEADER = open(sys.path[0] + '/doctest.pl').read().split("<<'SQL';\n", 1)[1].split('\nSQL\n', 1)[0] + '\n'


def run(sql):
    return subprocess.run(['psql', '-X', '-q', '-d', 'postgres'], input=sql.encode(),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT).stdout.decode()


def fill(path):
    lines = open(path, encoding='utf-8').read().split('\n')
    out, i, sql_so_far, prev = [], 0, HEADER, run(HEADER)
    while i < len(lines):
        line = lines[i]
        if line.strip() == '```sql':
            j = i + 1
            while lines[j].strip() != '```':
                j += 1
            block = '\n'.join(lines[i + 1:j]) + '\n'
            out.extend(lines[i:j + 1])
            sql_so_far += block
            now = run(sql_so_far)
            assert now.startswith(prev), 'output of earlier blocks changed'
            new, prev = now[len(prev):], now
            k = j + 1
            while k < len(lines) and lines[k].strip() == '':
                k += 1
            if k < len(lines) and lines[k].strip() == '```text':
                m = k + 1
                while lines[m].strip() != '```':
                    m += 1
                i = m + 1
            else:
                i = j + 1
            if new:
                out.extend(['', '```text'] + new.rstrip('\n').split('\n')
                           + ([''] if new.endswith('\n\n') else []) + ['```'])
            continue
        out.append(line)
        i += 1
    open(path, 'w', encoding='utf-8').write('\n'.join(out))


for p in sys.argv[1:]:
    fill(p)
