#!/bin/bash
# Steps shared by the GPU call recipes of the one-step student (training/results/call8/gpu_call8.sh,
# call9/gpu_call9.sh), sourced by them; they set PY (python) and DEVICE, CAPTIONS, EVAL_ARGS.
TURBO_UNET=weights/bundled_turbo/unet

card() { nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo cpu; }

install_wheels() {  # WHEEL_DIR...: the carried wheel folders that exist -> runs/site (pip --target)
  local wheels
  for wheels in "$@"; do
    if [ -d "$wheels" ]; then
      mkdir -p runs/site
      $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target runs/site "$wheels"/*.whl || return 1
    fi
  done
}

latency_settings() {  # N: a latency call's environment (calls 32, 33): runs/site importable, PY, and its outputs in O
  export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/runs/site:$PWD
  PY=${PYTHON:-python3}
  O=${OUT:-runs/out$1}
  mkdir -p "$O"
}

prepare_card() {  # WHEEL_DIR: a latency call's first step (calls 32, 33): the wheels -> runs/site, the card, the imports
  install_wheels "${1:?prepare WHEEL_DIR}" || return 1
  card
  $PY -c 'import diffusers, open_clip, fastapi, pydantic_settings, torch; print("imports ok", torch.__version__)'
}

# The student UNet (17.9 MB) does not fit in one upload beside the wheels: config, index and the
# second shard travel with `prepare`, the first shard with `launch`.
stage_student_part2() { mkdir -p "$1"; cp $TURBO_UNET/config.json $TURBO_UNET/*.index.json $TURBO_UNET/*00002-of-00002.safetensors "$1"/; }
stage_student_part1() { [ -f $TURBO_UNET/diffusion_pytorch_model-00001-of-00002.safetensors ] && cp $TURBO_UNET/*00001-of-00002.safetensors "$1"/; }

export_and_eval() {  # RUN W E NAME [STAGE]: RUN's teacher + its one-step student of STAGE (dmd; "none": the teacher alone) -> W;
  # students_eval -> E/students_NAME; the student's files -> E/weights_NAME; where the run exported other weights than
  # its final EMA (its start, or an earlier EMA, scored best in its own evaluation), that EMA too -> E/weights_NAME_ema
  # (UNet only, 18 MB: an ingredient for training.soup; call 23 lost run b's this way)
  local run=$1 w=$2 e=$3 name=$4 stage=${5:-dmd} only models=bundled-turbo
  only=(--turbo-only "$stage")
  [ "$stage" = none ] && only=(--teacher-only) && models=bundled
  $PY -m training.export_students "$run" "$w" "${only[@]}" > "$e/logs/export_$name.log" 2>&1 || { tail -n 20 "$e/logs/export_$name.log"; return 1; }
  # shellcheck disable=SC2086
  $PY -m training.students_eval --weights "$w" --out "$e/students_$name" --captions "$CAPTIONS" --device "$DEVICE" \
    --models $models $EVAL_ARGS > "$e/logs/students_eval_$name.log" 2>&1 || tail -n 20 "$e/logs/students_eval_$name.log"
  echo "== $name"; cat "$e/students_$name/students_eval.md"
  [ "$stage" = none ] && return 0
  mkdir -p "$e/weights_$name/bundled_turbo"
  cp -r "$w"/bundled_turbo/unet "$w"/bundled_turbo/scheduler "$w"/bundled_turbo/model_index.json "$e/weights_$name/bundled_turbo/"
  local chosen  # the stage's own choice, as export_student reads it (ema_student when the state names none)
  chosen=$($PY -c 'import json, sys; print(json.load(open(sys.argv[1]))["metrics"].get("export", "ema_student"))' \
    "$run/$stage/state.json")
  [ "$chosen" = ema_student ] && return 0
  $PY -m training.export_students "$run" "${w}_ema" "${only[@]}" --checkpoint ema_student > "$e/logs/export_${name}_ema.log" 2>&1 \
    || { tail -n 20 "$e/logs/export_${name}_ema.log"; return 0; }
  mkdir -p "$e/weights_${name}_ema/bundled_turbo"; cp -r "${w}_ema"/bundled_turbo/unet "$e/weights_${name}_ema/bundled_turbo/"
}

import_runs() {  # E RUN COPY...: the card -> E/card.txt; the shipped weights imported into RUN (E/logs/import.log); RUN copied to each COPY
  local e=$1 run=$2 copy
  shift 2
  card | tee "$e/card.txt"
  $PY -m training.export --import weights "$run" > "$e/logs/import.log" 2>&1 || { cat "$e/logs/import.log"; return 1; }
  for copy in "$@"; do cp -r "$run" "$copy"; done
}

launch_runs() {  # WAIT_S RUN...: call N's runs afresh (E, runs/runNX, runs/wN_runNX; the runs' letters in E/runs.txt), the
  # shipped weights imported into the first run and copied to the others, SCRIPT's pipeline started, a poll after WAIT_S
  local wait=$1 first=$2 x copies=()
  shift 2
  rm -rf "$E" runs/run"$N"? runs/w"$N"_run"$N"?; mkdir -p "$E/logs"; echo "$first $*" > "$E/runs.txt"
  for x in "$@"; do copies+=("runs/run$N$x"); done
  import_runs "$E" "runs/run$N$first" "${copies[@]}" || return 1
  start_pipeline "$SCRIPT" "$E" "$wait"
}

start_pipeline() {  # SCRIPT E WAIT_S: SCRIPT's `pipeline` mode detached (log E/pipeline.log), then its `poll` after WAIT_S
  setsid nohup bash "$1" pipeline > "$2/pipeline.log" 2>&1 < /dev/null &
  log "pipeline started"; sleep "${3:-60}"; bash "$1" poll 0
}

poll_logs() {  # E TAG LINES PATTERN LOG...: the pipeline's last LINES TAG lines, each run log's last PATTERN lines, the GPU
  local e=$1 tag=$2 lines=$3 pattern=$4 f
  shift 4
  grep -h "^\[$tag" "$e/pipeline.log" | tail -n "$lines"
  for f in "$@"; do [ -f "$e/logs/$f.log" ] && { echo "$f:"; grep "$pattern" "$e/logs/$f.log" | tail -n "$lines" | cut -c1-300; }; done
  nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null || true
}

pack() {  # DIR NAME [TAR_ARG...]: DIR (or its TAR_ARGs: options, then members) as NAME.tar.partNN (15 MB each: the
  # device returns files <= 16 MiB) queued in runs/outbox, then sent (send_parts)
  local dir=$1 name=$2
  shift 2; [ $# -gt 0 ] || set -- .
  mkdir -p runs/outbox
  tar -C "$dir" -cf - "$@" | split -b 15M -d - "runs/outbox/$name.tar.part"
  send_parts
}

send_parts() {  # the parts waiting in runs/outbox -> $OUT in name order, as many as one reply brings back (8 files,
  # 64 MiB together: call 29's finish packed 64.0 MiB and lost its last part); the rest wait for the next send_parts
  local f size total=0 n=0
  for f in $(find runs/outbox -type f -printf '%f\n' 2>/dev/null | sort); do
    size=$(stat -c %s "runs/outbox/$f")
    { [ $n -lt 8 ] && [ $((total + size)) -le $((64 << 20)) ]; } || break
    mv "runs/outbox/$f" "${OUT:-runs}/"; total=$((total + size)); n=$((n + 1))
  done
  ls -l "${OUT:-runs}"
  find runs/outbox -type f -printf 'waiting for the next call: %f\n' 2>/dev/null | sort
}

call_settings() {  # N TRAIN_S: call N's folder runs/eN, tag callN and log(); the environment's overrides (DEVICE cuda,
  # TRAIN_S the recipe's default, CAPTIONS 512, BATCH 512, UNET_BATCH 1024, EVAL_ARGS, COMPILE --compile, PYTHON python3)
  N=$1; E=runs/e$1; TAG=call$1
  DEVICE=${DEVICE:-cuda}; TRAIN_S=${TRAIN_S:-$2}; CAPTIONS=${CAPTIONS:-512}; BATCH=${BATCH:-512}
  UNET_BATCH=${UNET_BATCH:-1024}; EVAL_ARGS=${EVAL_ARGS:-}; COMPILE=${COMPILE---compile}
  export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/runs/site:$PWD
  PY=${PYTHON:-python3}
  log() { echo "[$TAG $(date +%H:%M:%S)] $*"; }
}

prepare_student() {  # UP: a student call's first upload: the wheels, and the student's shard 2 + config staged in UP
  install_wheels .whl_t || return 1
  stage_student_part2 "$1"; card; ls -l "$1"
}

unet_recipe() {  # N SCRIPT: call_settings for teacher-only UNet call N (TRAIN_S 1000; run X in runs/runNX, exported to
  # runs/wN_runNX); then the recipe sets UNET_ARGS (run u) and, for a second run beside it on the card, UNET_ARGS_V
  # (run v), and calls `unet_call "$@"`
  SCRIPT=$2
  call_settings "$1" 1000
}

unet_runs() { echo u; [ -n "${UNET_ARGS_V+x}" ] && echo v; }  # the recipe's runs: u, and v when it set UNET_ARGS_V

unet_call() {  # MODE [WAIT_S]: teacher-only UNet runs (calls 10, 11), alone on the card (two share it), as unet_recipe
  # set them up; UNET_ARGS / UNET_ARGS_V (arrays): training.text_unet's arguments besides --out/--seconds/--device/--batch.
  # launch: wheels, import of the shipped weights, the pipeline started; poll WAIT_S; stop MIN_S: end the runs after
  # their snapshots at >= MIN_S s; finish: per run, teacher-only export, students_eval (the teacher row), relation_swap,
  # the UNet and logs packed under $OUT.
  local x name logs=()
  for x in $(unet_runs); do logs+=("unet_run$N$x"); done
  case $1 in
  launch)
    install_wheels .whl_t || return 1
    launch_runs "${2:-60}" $(unet_runs)
    ;;
  pipeline)
    local t0; t0=$(date +%s)
    local args
    for x in $(unet_runs); do
      args=("${UNET_ARGS[@]}"); [ "$x" = v ] && args=("${UNET_ARGS_V[@]}")
      log "UNet run $N$x for $TRAIN_S s: ${args[*]}"
      $PY -m training.text_unet --out "runs/run$N$x" --seconds "$TRAIN_S" --device "$DEVICE" --batch "$UNET_BATCH" "${args[@]}" \
        > "$E/logs/unet_run$N$x.log" 2>&1 &
      echo $! > "$E/pid_run$N$x"
    done
    wait
    log "all done at $(( $(date +%s) - t0 )) s"; touch "$E/DONE"
    ;;
  poll)
    sleep "${2:-0}"
    poll_logs "$E" "$TAG" 3 "probe\|snapshot\|Error" "${logs[@]}"
    ;;
  stop)  # MIN_S [MAX_WAIT_S]: end the runs early (device time), each right after its first snapshot at >= MIN_S s
    local min=${2:?stop MIN_S} until=$(( $(date +%s) + ${3:-300} )) ready last
    while [ ! -f "$E/DONE" ]; do
      ready=1
      for x in $(unet_runs); do
        last=$(grep -o 'snapshot at step [0-9]*, [0-9]* s' "$E/logs/unet_run$N$x.log" | tail -n 1 | awk '{print $(NF-1)}')
        [ "${last:-0}" -ge "$min" ] || ready=0
      done
      [ $ready = 1 ] && break
      [ "$(date +%s)" -ge "$until" ] && { log "no snapshot at >= $min s yet: runs left going"; return 1; }
      sleep 5
    done
    [ -f "$E/DONE" ] && { log "runs already done"; return 0; }
    for x in $(unet_runs); do kill "$(cat "$E/pid_run$N$x")" 2>/dev/null; done  # by pid: a pattern would match this shell
    while [ ! -f "$E/DONE" ]; do sleep 1; done
    log "stopped after their snapshots at >= $min s: export takes those EMA weights"
    ;;
  finish)
    while [ ! -f "$E/DONE" ]; do sleep 5; done
    unet_call poll 0
    for x in $(unet_runs); do
      local run=runs/run$N$x w=runs/w${N}_run$N$x; name=run$N$x
      export_and_eval "$run" "$w" "$E" "$name" none
      mkdir -p "$E/weights_$name" && cp -r "$w/bundled/unet" "$E/weights_$name/teacher_unet"
      cp "$w/bundled/model_index.json" "$E/weights_$name/teacher_model_index.json"
      cp "$run/text_unet/state.json" "$E/state_${name}_text_unet.json"; cp "$run/text_unet/loss.png" "$E/loss_${name}_text_unet.png"
      local directions=1  # does the layout now follow the relation word? (training.relation_swap, on the card)
      grep -q '"darkroom_text_directions": 2' "$w/bundled/model_index.json" && directions=2
      $PY -m training.relation_swap --unet "$w/bundled/unet" --text-directions $directions --device "$DEVICE" \
        --captions "${SWAP_CAPTIONS:-96}" --out "$E/relation_swap_$name.md" > "$E/logs/relation_swap_$name.log" 2>&1 \
        && cat "$E/relation_swap_$name.md" || tail -n 20 "$E/logs/relation_swap_$name.log"
    done
    pack "$E" "$(basename "$E")"; log done
    ;;
  *) echo "unknown mode $1" >&2; return 2 ;;
  esac
}

student_runs() {  # MODE [ARG]: one-step student runs side by side on the card (call 18 on). The recipe sets N and SCRIPT
  # (call_settings N ...), RUNS (run letters) and defines `run_stage X` (the stage: dmd, refine) and `run_command X` (the
  # stage's module and its recipe arguments besides --out/--seconds/--device/--batch); run X is runs/runNX, exported to
  # runs/wN_runNX.
  #   prepare WHEEL_DIR: the wheels -> runs/site (kept between calls on a warm machine: the next upload can carry weights)
  #   launch WAIT_S: import of the shipped weights into each run, the pipeline started, a poll after WAIT_S
  #   poll WAIT_S; stop X... [WAIT_S]: end runs X early (distill_dmd's RUN/STOP), then a poll
  #   finish: per run, the one-step export, students_eval (teacher + student), state and loss curve; run CRITIC_RUN's
  #   (default: the first run's) critic (distill_dmd's critic_fp16, if any) as E/critic_runNX; all packed
  # GPUS="0 1": on a machine of several cards, run X takes card GPUS[i mod n] for the i-th run (CUDA_VISIBLE_DEVICES)
  # PROFILE_RUN=X PROFILE_AT=S: py-spy samples run X for 30 s from S s into the pipeline (E/pyspy_X.txt, folded stacks)
  local x logs=()
  case $1 in poll | stop | finish)  # a later call's env must name the launched call: else finish would wait forever
    [ -f "$E/runs.txt" ] || { echo "no runs launched in $E: give the same call settings (CALL, N) as at launch" >&2; return 1; } ;;
  esac
  [ "$1" != launch ] && [ -f "$E/runs.txt" ] && RUNS=$(cat "$E/runs.txt")  # launch's RUNS, whatever the later calls' env
  for x in $RUNS; do logs+=("$(run_stage "$x")_$x"); done
  case $1 in
  prepare)
    install_wheels "${2:?prepare WHEEL_DIR}" || return 1
    card
    ;;
  launch)
    # shellcheck disable=SC2086
    launch_runs "${2:-60}" $RUNS
    ;;
  pipeline)
    local t0 i=0 gpus on=() cmd
    t0=$(date +%s); read -r -a gpus <<< "${GPUS:-}"  # GPUS="0 1": the runs take the cards in turn (a 0, b 1, c 0, ...)
    for x in $RUNS; do
      [ ${#gpus[@]} -gt 0 ] && on=(env CUDA_VISIBLE_DEVICES="${gpus[i % ${#gpus[@]}]}") && i=$((i + 1))
      log "$x for $TRAIN_S s${on[*]:+ (${on[*]:1})}: $(run_command "$x")"
      # the module, the call's shared settings, then the run's own arguments: a run's --batch overrides BATCH
      read -r -a cmd <<< "$(run_command "$x")"
      "${on[@]}" $PY -m "${cmd[0]}" --out "runs/run$N$x" --seconds "$TRAIN_S" --device "$DEVICE" --batch "$BATCH" "${cmd[@]:1}" \
        > "$E/logs/$(run_stage "$x")_$x.log" 2>&1 &
      echo $! > "$E/pid_run$N$x"
    done
    if [ -n "${PROFILE_RUN:-}" ]; then
      sleep "${PROFILE_AT:-180}"
      runs/site/bin/py-spy record -d 30 -r 100 -f raw -o "$E/pyspy_$PROFILE_RUN.txt" --pid "$(cat "$E/pid_run$N$PROFILE_RUN")" \
        > "$E/logs/pyspy.log" 2>&1 || log "py-spy failed (logs/pyspy.log)"
      nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader >> "$E/logs/pyspy.log" 2>&1
    fi
    wait
    log "all done at $(( $(date +%s) - t0 )) s"; touch "$E/DONE"
    ;;
  poll)
    sleep "${2:-0}"
    poll_logs "$E" "$TAG" 3 "step\|Error\|cache" "${logs[@]}"
    ;;
  stop)  # X... [WAIT_S]: end runs X early (their deadline; each still saves and evaluates), then poll after WAIT_S
    shift
    while [ $# -gt 0 ] && [[ $1 =~ ^[a-z]$ ]]; do touch "runs/run$N$1/STOP"; log "run $1: STOP"; shift; done
    student_runs poll "${1:-0}"
    ;;
  finish)
    while [ ! -f "$E/DONE" ]; do sleep 5; done
    student_runs poll 0
    local s
    for x in $RUNS; do
      s=$(run_stage "$x")
      export_and_eval "runs/run$N$x" "runs/w${N}_run$N$x" "$E" "run$N$x" "$s"
      cp "runs/run$N$x/$s/state.json" "$E/state_run$N${x}_$s.json"; cp "runs/run$N$x/$s/loss.png" "$E/loss_run$N${x}_$s.png"
    done
    x=${CRITIC_RUN:-${RUNS%% *}}; s=$(run_stage "$x")  # one run's critic (fp16, ~18 MB; DMD only) for a later call
    [ -d "runs/run$N$x/$s/critic_fp16" ] && cp -r "runs/run$N$x/$s/critic_fp16" "$E/critic_run$N$x"
    pack "$E" "$(basename "$E")"; log done
    ;;
  *) echo "unknown mode $1" >&2; return 2 ;;
  esac
}

export_final_emas() {  # X...: each run's final EMA (whatever its own evaluation chose: an ingredient of a weight
  # average), state, loss curve and its own final evaluation -> E (call 25 on)
  local x
  for x in "$@"; do
    $PY -m training.export_students "runs/run$N$x" "runs/w${N}_run$N$x" --turbo-only dmd --checkpoint ema_student \
      > "$E/logs/export_run$N$x.log" 2>&1 || { tail -n 20 "$E/logs/export_run$N$x.log"; continue; }
    mkdir -p "$E/weights_run$N$x"; cp -r "runs/w${N}_run$N$x/bundled_turbo/unet" "$E/weights_run$N$x/"
    cp "runs/run$N$x/dmd/state.json" "$E/state_run$N${x}_dmd.json"; cp "runs/run$N$x/dmd/loss.png" "$E/loss_run$N${x}_dmd.png"
    $PY -c 'import json, sys; m = json.load(open(sys.argv[1]))["metrics"]; print(sys.argv[2], m.get("steps_this_run"),
      {k: round(v, 3) for k, v in m.items() if k.endswith("_caption")})' "runs/run$N$x/dmd/state.json" "$x"
  done
}

finish_in_two() {  # after the runs of E/runs.txt: every final EMA exported (export_final_emas) and E packed with the first
  # run's critic, without the runs from the third on and the third's critic, which `pack_later` packs next: four fp32
  # UNets and two critics do not fit one reply's 64 MiB. What one reply cannot bring waits in the outbox for `rest`.
  local x runs excludes=()
  [ -f "$E/runs.txt" ] || { echo "no runs launched in $E" >&2; return 1; }
  read -r -a runs < "$E/runs.txt"
  while [ ! -f "$E/DONE" ]; do sleep 5; done
  student_runs poll 0
  card; export_final_emas "${runs[@]}"
  rm -rf "$E"/critic_run"$N"?  # (a second finish would nest the copies)
  for x in "${runs[0]}" "${runs[2]:-}"; do
    [ -n "$x" ] && [ -d "runs/run$N$x/dmd/critic_fp16" ] && cp -r "runs/run$N$x/dmd/critic_fp16" "$E/critic_run$N$x"
  done
  for x in "${runs[@]:2}"; do excludes+=(--exclude="weights_run$N$x"); done
  [ ${#runs[@]} -gt 2 ] && excludes+=(--exclude="critic_run$N${runs[2]}")
  rm -rf runs/outbox "$E/LATER_PACKED"  # (a second finish starts the queue again)
  pack "$E" "e$N" "${excludes[@]}" .; log done
}

pack_later() {  # after finish_in_two: the weights of the runs of E/runs.txt from the third on, and the third's critic,
  # queued behind what finish left in the outbox (packed once: a second call only sends what still waits)
  local x runs parts=()
  read -r -a runs < "$E/runs.txt"
  if [ ${#runs[@]} -gt 2 ] && [ ! -f "$E/LATER_PACKED" ]; then
    for x in "${runs[@]:2}"; do parts+=("weights_run$N$x"); done
    [ -d "$E/critic_run$N${runs[2]}" ] && parts+=("critic_run$N${runs[2]}")
    touch "$E/LATER_PACKED"
    pack "$E" "e${N}_$(printf %s "${runs[@]:2}")" "${parts[@]}"
  else
    send_parts
  fi
}

paired_one() {  # UNET NAME: UNET against INIT on the card, paired in fp32 (training.paired_compare; PAIRED_CAPTIONS per split,
  # default 768; PAIRED_SEED, default 113) -> $OUT/paired_NAME.json and E/logs/paired_NAME.log
  $PY -m training.paired_compare --device "$DEVICE" --unet "$1" --baseline "$INIT" --captions "${PAIRED_CAPTIONS:-768}" \
    --seed "${PAIRED_SEED:-113}" --out "${OUT:-runs}/paired_$2.json" > "$E/logs/paired_$2.log" 2>&1 \
    || tail -n 20 "$E/logs/paired_$2.log"
  echo "$2:"; grep "^both {" "$E/logs/paired_$2.log"
}

stage_turbo_shards() {  # bundled-turbo's UNet shards from INIT (the shipped student) where the slim tree left them out
  local x
  mkdir -p weights/bundled_turbo/unet
  for x in "$INIT"/*.safetensors; do [ -f "weights/bundled_turbo/unet/${x##*/}" ] || cp "$x" weights/bundled_turbo/unet/; done
}

latency_on_card() {  # the decoder levers' CUDA tests, then the shipped teacher and one-step student at batch 1 and batched
  # and each serving lever in turn (training.students_eval --latency-only) -> $OUT/latency/{pytest.txt,students_latency.json}
  stage_turbo_shards
  mkdir -p "${OUT:-runs}/latency"
  $PY -m pytest -q -p no:cacheprovider -rs \
    tests/test_perf_levers.py::test_the_compiled_decoder_in_either_layout_and_its_graphs_keep_the_eager_images \
    tests/test_tiny_decoder_api.py::test_the_decoder_lever_wraps_the_tiny_decoder_too_and_keeps_its_images 2>&1 \
    | tail -n 12 | tee "${OUT:-runs}/latency/pytest.txt"
  $PY -m training.students_eval --weights weights --manifest weights_manifest.yaml --out "${OUT:-runs}/latency" --latency-only \
    --models bundled-turbo > "$E/logs/latency.log" 2>&1 || tail -n 20 "$E/logs/latency.log"
  grep " ms " "$E/logs/latency.log"
}

paired_on_card() {  # after finish: each run's final EMA (runs/wN_runNX), the mean of INIT and it (soupN_sX), and the mean of
  # INIT and every run (soupN_sall), each paired against INIT (paired_one). bundled-turbo's own files must be there: the
  # default slim tree sends its small files, and its UNet shards are taken from INIT (the shipped student) when missing.
  local x unet all=()
  stage_turbo_shards
  for x in $(cat "$E/runs.txt"); do
    unet="runs/w${N}_run$N$x/bundled_turbo/unet"
    [ -d "$unet" ] || { log "run $x: no exported EMA"; continue; }
    all+=("$unet")
    paired_one "$unet" "run$N$x"
    $PY -m training.soup "runs/soup${N}_s$x" "$INIT" "$unet" > "$E/logs/soup_s$x.log" 2>&1 && paired_one "runs/soup${N}_s$x" "soup${N}_s$x"
  done
  [ ${#all[@]} -gt 1 ] && $PY -m training.soup "runs/soup${N}_sall" "$INIT" "${all[@]}" > "$E/logs/soup_sall.log" 2>&1 \
    && paired_one "runs/soup${N}_sall" "soup${N}_sall"
  return 0
}

dmd_four_runs() {  # CALL_N MODE...: the recipes of calls 25 on. Runs a-d of distill_dmd side by side on the cards that
  # GPUS names (default "0 1": a and c on card 0, b and d on card 1; "0 1 2 3": one run per card), each from INIT
  # (runs/initCALL_N/unet) and, when carried, CRITIC's critic (runs/criticCALL_N); the recipe sets DMD_HEAD (the
  # arguments every run shares) and defines `dmd_run_args X` (run X's own, last: they override the shared ones and
  # BATCH). finish packs a and b with a's critic, rest c and d with c's critic.
  SCRIPT=$0; CAPTIONS=${CAPTIONS:-128}; INIT=${INIT:-runs/init$1/unet}; CRITIC=${CRITIC:-runs/critic$1}
  call_settings "${CALL:-$1}" 1250
  shift
  RUNS=${RUNS:-a b c d}; GPUS=${GPUS-0 1}
  export GPUS
  run_stage() { echo dmd; }
  run_command() {
    local args="training.distill_dmd --init-unet $INIT $DMD_HEAD"
    [ -f "$CRITIC/fake_score.safetensors" ] && args+=" --init-critic $CRITIC"
    echo "$args --critic-warmup ${WARMUP:-200} $(dmd_run_args "$1") --compile reduce-overhead"
  }
  case ${1:-} in
  finish) finish_in_two ;;  # a and b (and a's critic) packed; c and d wait for `rest`
  rest) pack_later ;;       # c and d's weights and run c's critic, behind whatever finish could not send
  latency) latency_on_card ;;  # the shipped teacher and student's latency on the card, as served
  paired) paired_on_card ;;  # every run's final EMA, and its mean with the start, against the start, paired on the card
  *) student_runs "$@" ;;
  esac
}
