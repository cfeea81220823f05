#!/usr/bin/env bash
# The README's first command: set up, build, and serve the hello example on 127.0.0.1:8080
# in the foreground (Ctrl-C stops it gracefully).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
exec "$BUILD_DIR/server/herd" run "$HERD_ROOT/examples/hello.json"
