# Shared helpers of the AlignedReID++ launch scripts (sourced, not run).
#
# Every script accepts --dry-run anywhere on its command line (or DRY_RUN=1 in the
# environment): it then checks its arguments as usual and prints the commands it would
# run, one per line prefixed with "+ ", instead of running them.
#
# Environment knobs shared by the scripts:
#   PYTHON       Python interpreter (default: python)
#   CONFIG_FILE  config, relative to the repository root or absolute
#                (default: configs/Market1501/alignedpp_R50.yml)

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "${SCRIPT_DIR}/../../.." && pwd)"
PYTHON="${PYTHON:-python}"
CONFIG_FILE="${CONFIG_FILE:-configs/Market1501/alignedpp_R50.yml}"
DRY_RUN="${DRY_RUN:-0}"

# die MESSAGE: print the message and the usage on stderr, exit 1.
die() {
    echo "error: $1" >&2
    echo >&2
    usage >&2
    exit 1
}

# strip_dry_run ARGS...: sets DRY_RUN=1 when --dry-run is present and leaves the other
# arguments in the array ARGS.
strip_dry_run() {
    ARGS=()
    local arg
    for arg in "$@"; do
        if [ "$arg" = "--dry-run" ]; then
            DRY_RUN=1
        else
            ARGS+=("$arg")
        fi
    done
}

# abs_path PATH: the absolute form of PATH (which need not exist).
abs_path() {
    case "$1" in
        /*) echo "$1" ;;
        *) echo "$(pwd)/$1" ;;
    esac
}

# check_dir NAME PATH / check_file NAME PATH: fail with a message naming the argument.
check_dir() {
    [ -d "$2" ] || die "$1 '$2' is not a directory."
}
check_file() {
    [ -f "$2" ] || die "$1 '$2' is not a file."
}

# check_uint NAME VALUE: a non-negative integer.
check_uint() {
    case "$2" in
        ''|*[!0-9]*) die "$1 must be a non-negative integer, got '$2'." ;;
    esac
}

# resolve_config: CONFIG_PATH = the config file, checked.
resolve_config() {
    case "$CONFIG_FILE" in
        /*) CONFIG_PATH="$CONFIG_FILE" ;;
        *) CONFIG_PATH="${REPO_ROOT}/${CONFIG_FILE}" ;;
    esac
    [ -f "$CONFIG_PATH" ] || die "config file '$CONFIG_PATH' not found (set CONFIG_FILE)."
}

# quote ARGS...: the arguments as one shell-quoted string.
quote() {
    local out="" arg
    for arg in "$@"; do
        out+="$(printf '%q' "$arg") "
    done
    echo "${out% }"
}

# run_logged LOG ENV_ASSIGNMENTS... -- COMMAND...: run COMMAND from the repository root
# in the background with the assignments in its environment, stdout and stderr to LOG;
# in dry-run mode print it instead. FOREGROUND=1 waits for it (exit status returned).
run_logged() {
    local log="$1"; shift
    local envs=()
    while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do
        envs+=("$1"); shift
    done
    shift
    local line
    line="cd $(quote "$REPO_ROOT") && env $(quote "${envs[@]}") $(quote "$@") > $(quote "$log") 2>&1"
    if [ "$DRY_RUN" = "1" ]; then
        echo "+ ${line}"
        return 0
    fi
    mkdir -p "$(dirname "$log")"
    if [ "${FOREGROUND:-0}" = "1" ]; then
        (cd "$REPO_ROOT" && env "${envs[@]}" "$@" > "$log" 2>&1)
        return $?
    fi
    (cd "$REPO_ROOT" && nohup env "${envs[@]}" "$@" > "$log" 2>&1 &)
    echo "started: ${line}"
}
