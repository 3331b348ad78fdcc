#!/usr/bin/env bash
# `make run`: mxgate on 127.0.0.1:2525 in front of a local Maildir, in the foreground.
set -eu
cd "$(dirname "$0")/.."
mkdir -p demo-maildir
cat <<MSG

  mxgate demo: listening on 127.0.0.1:2525, delivering into $(pwd)/demo-maildir/new/

  Send it a message from another terminal:
      swaks --server 127.0.0.1 --port 2525 --from you@example.test --to someone@demo.test
  Then look at what arrived (our Received: header is on top):
      ls demo-maildir/new/ && cat demo-maildir/new/*
  What mxgate saw: the status page http://127.0.0.1:9125/ (curl -s 127.0.0.1:9125/metrics),
  and from the repository directory:
      build/mxgatectl -s demo-control.sock status

  The config is examples/demo.yaml (reference: docs/config.md); logs below, one line per event.
  Ctrl-C (or kill -TERM $$) stops it: sessions finish first, then it exits.

MSG
exec build/mxgate -c examples/demo.yaml
