#!/bin/bash
# Shrink what a GPU call uploads: the GPU machine takes at most 64 MiB of working tree per call
# (tracked plus untracked-not-ignored files plus carried paths), and the tracked tree with every
# shipped model (~93 MB) is larger. `slim` takes every tracked file that does not match KEEP out
# of the index (the files stay on disk) and ignores it in .git/info/exclude, so the call sends
# only code and the weights it needs; `unslim` restores the index and the exclude file. Commit
# only with explicit paths (`git commit -- PATHS`) while slim.
#   bash tools/device_tree.sh slim [KEEP_REGEX]    # default: code, tests, weights/bundled, weights/judge, bundled_turbo's
#                                                  # small files (its UNet's shards stay: a call carries its start)
#   bash tools/device_tree.sh unslim
#   bash tools/device_tree.sh size                 # bytes that the next call would send (no carry)
set -eu
cd "$(git rev-parse --show-toplevel)"
LIST=.git/device_tree.list
KEEP_DEFAULT='^bench/[^/]*$|^pipelines/|^server/|^tests/|^weights/bundled/|^weights/judge/|^weights/bundled_turbo/(model_index\.json|scheduler/[^/]*|text_encoder|tokenizer|vae|unet/[^/]*\.json)$|^weights_manifest.yaml$|^training/[a-z_]*\.(py|sh|json)$|^training/results/[^/]*/[^/]*\.sh$|^pyproject.toml$|^\.gitignore$'
size() { (git ls-files; git ls-files -o --exclude-standard) | tr '\n' '\0' | xargs -0 du -cb 2>/dev/null | tail -n 1; }
case ${1:-} in
slim)
  [ -f $LIST ] && { echo "already slim ($LIST exists): unslim first" >&2; exit 1; }
  git ls-files | grep -Ev "${2:-$KEEP_DEFAULT}" > $LIST || true
  tr '\n' '\0' < $LIST | xargs -0 -r git rm -q --cached --
  { echo "# device-tree-begin"; sed 's|^|/|' $LIST; echo "# device-tree-end"; } >> .git/info/exclude
  echo "untracked for the call: $(wc -l < $LIST) files"; size
  ;;
unslim)
  [ -f $LIST ] || { echo "not slim" >&2; exit 1; }
  tr '\n' '\0' < $LIST | xargs -0 -r git reset -q --
  sed -i '/# device-tree-begin/,/# device-tree-end/d' .git/info/exclude
  rm -f $LIST; git status --short | head
  ;;
size) size ;;
*) echo "usage: $0 slim [KEEP_REGEX] | unslim | size" >&2; exit 2 ;;
esac
