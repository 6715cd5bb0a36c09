#!/bin/sh
# Regenerates the README's configuration table from the binary's config
# table (tests/integration/docs.test.mjs fails until this is run).
set -eu
cd "$(dirname "$0")/.."
bin=${MCPGATE_BIN:-build/mcpgate}
python3 - "$bin" <<'PY'
import re, subprocess, sys
table = subprocess.run([sys.argv[1], 'config-doc'], capture_output=True, text=True, check=True).stdout
s = open('README.md').read()
s = re.sub(r'<!-- config-table:begin -->.*<!-- config-table:end -->',
           lambda m: '<!-- config-table:begin -->\n' + table + '<!-- config-table:end -->', s, flags=re.S)
open('README.md', 'w').write(s)
PY
