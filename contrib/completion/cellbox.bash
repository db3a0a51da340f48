# bash completion for the cellbox CLI.
# Install: source this file, or copy it to /usr/share/bash-completion/completions/cellbox
# Sandbox ids are completed from `cellbox ls --json` (quietly skipped when
# cellboxd is not reachable).

_cellbox_sandboxes()
{
    cellbox "${_cellbox_global[@]}" --json ls 2>/dev/null |
        sed -n 's/^ *"\(id\|name\)": "\([^"]*\)".*/\2/p'
}

# Terminal ids of sandbox $1 (from `cellbox pty ls --json`).
_cellbox_ptys()
{
    cellbox "${_cellbox_global[@]}" --json pty ls "$1" 2>/dev/null |
        sed -n 's/^ *"pty_id": "\([^"]*\)".*/\1/p'
}

# Exposed ports of sandbox $1.
_cellbox_ports()
{
    cellbox "${_cellbox_global[@]}" --json ports "$1" 2>/dev/null |
        sed -n 's/^ *"port": \([0-9]*\).*/\1/p'
}

_cellbox()
{
    local cur prev words cword
    _init_completion -n : 2>/dev/null || {
        cur=${COMP_WORDS[COMP_CWORD]}
        prev=${COMP_WORDS[COMP_CWORD-1]}
        words=("${COMP_WORDS[@]}")
        cword=$COMP_CWORD
    }

    local commands="create ls info rm stop start pause resume keepalive update exec run ps logs kill cp cat write ls-files shell attach pty expose unexpose ports admin version help"
    local globals="--socket --host --api-key --json --help"
    local create_opts="--template --tier --cpu --memory --disk --pids --timeout --idle-timeout --on-idle --env --metadata --name --workdir --user --snapshot --no-internet --help"

    # Find the command word and remember global options for nested calls.
    local i cmd="" cmd_index=0
    _cellbox_global=()
    for ((i = 1; i < cword; i++)); do
        case ${words[i]} in
        --socket | --host | --api-key)
            _cellbox_global+=("${words[i]}" "${words[i+1]}")
            ((i++))
            ;;
        --json) ;;
        -*) ;;
        *)
            cmd=${words[i]}
            cmd_index=$i
            break
            ;;
        esac
    done

    case $prev in
    --socket) COMPREPLY=($(compgen -f -- "$cur")); return ;;
    --tier) COMPREPLY=($(compgen -W "container gvisor microvm" -- "$cur")); return ;;
    --on-idle) COMPREPLY=($(compgen -W "pause standby stop" -- "$cur")); return ;;
    --state) COMPREPLY=($(compgen -W "running paused standby stopped" -- "$cur")); return ;;
    --user) COMPREPLY=($(compgen -W "user root" -- "$cur")); return ;;
    -s | --signal) COMPREPLY=($(compgen -W "TERM INT HUP KILL QUIT USR1 USR2" -- "$cur")); return ;;
    --host | --api-key | --template | --cpu | --memory | --disk | --pids | --timeout | \
        --idle-timeout | --env | --metadata | --name | --workdir | --snapshot | --cwd | \
        --tenant | --depth | --mode | --cols | --rows)
        return ;;
    esac

    if [[ -z $cmd ]]; then
        COMPREPLY=($(compgen -W "$commands $globals" -- "$cur"))
        return
    fi

    # Arguments after "--" belong to the command run in the sandbox.
    for ((i = cmd_index + 1; i < cword; i++)); do
        [[ ${words[i]} == -- ]] && return
    done

    local nargs=$((cword - cmd_index))
    case $cmd in
    create) COMPREPLY=($(compgen -W "$create_opts" -- "$cur")) ;;
    run) COMPREPLY=($(compgen -W "$create_opts --cwd --no-stdin --" -- "$cur")) ;;
    ls) COMPREPLY=($(compgen -W "--state --metadata --help" -- "$cur")) ;;
    info | rm | stop | start | pause | resume | ps | cat | write | ls-files | logs | kill)
        if [[ $cur == -* ]]; then
            case $cmd in
            logs) COMPREPLY=($(compgen -W "--follow -f --help" -- "$cur")) ;;
            kill) COMPREPLY=($(compgen -W "--signal -s --help" -- "$cur")) ;;
            write) COMPREPLY=($(compgen -W "--mode --help" -- "$cur")) ;;
            ls-files) COMPREPLY=($(compgen -W "--depth --help" -- "$cur")) ;;
            *) COMPREPLY=($(compgen -W "--help" -- "$cur")) ;;
            esac
        elif ((nargs == 1)) || [[ $cmd == rm ]]; then
            COMPREPLY=($(compgen -W "$(_cellbox_sandboxes)" -- "$cur"))
        fi
        ;;
    keepalive | update)
        if [[ $cur == -* ]]; then
            if [[ $cmd == update ]]; then
                COMPREPLY=($(compgen -W "--cpu --memory --disk --pids --timeout --idle-timeout --on-idle --metadata --help" -- "$cur"))
            else
                COMPREPLY=($(compgen -W "--timeout --help" -- "$cur"))
            fi
        elif ((nargs == 1)); then
            COMPREPLY=($(compgen -W "$(_cellbox_sandboxes)" -- "$cur"))
        fi
        ;;
    exec)
        if [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W "--cwd --env --user --timeout --no-stdin --help --" -- "$cur"))
        else
            COMPREPLY=($(compgen -W "$(_cellbox_sandboxes)" -- "$cur"))
        fi
        ;;
    cp)
        # Local paths, or ID: for the sandbox side.
        COMPREPLY=($(compgen -f -- "$cur") $(compgen -W "$(_cellbox_sandboxes | sed 's/$/:/')" -- "$cur"))
        compopt -o nospace 2>/dev/null
        ;;
    shell)
        if [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W "--cols --rows --env --cwd --user --help --" -- "$cur"))
        elif ((nargs == 1)); then
            COMPREPLY=($(compgen -W "$(_cellbox_sandboxes)" -- "$cur"))
        fi
        ;;
    attach)
        if [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W "--help" -- "$cur"))
        elif ((nargs == 1)); then
            COMPREPLY=($(compgen -W "$(_cellbox_sandboxes)" -- "$cur"))
        elif ((nargs == 2)); then
            COMPREPLY=($(compgen -W "$(_cellbox_ptys "${words[cmd_index+1]}")" -- "$cur"))
        fi
        ;;
    pty)
        case $nargs in
        1) COMPREPLY=($(compgen -W "ls kill --help" -- "$cur")) ;;
        2) COMPREPLY=($(compgen -W "$(_cellbox_sandboxes)" -- "$cur")) ;;
        3) [[ ${words[cmd_index+1]} == kill ]] &&
            COMPREPLY=($(compgen -W "$(_cellbox_ptys "${words[cmd_index+2]}")" -- "$cur")) ;;
        esac
        ;;
    expose | unexpose | ports)
        if [[ $cur == -* ]]; then
            case $cmd in
            expose) COMPREPLY=($(compgen -W "--public --help" -- "$cur")) ;;
            *) COMPREPLY=($(compgen -W "--help" -- "$cur")) ;;
            esac
        elif ((nargs == 1)); then
            COMPREPLY=($(compgen -W "$(_cellbox_sandboxes)" -- "$cur"))
        elif ((nargs == 2)) && [[ $cmd == unexpose ]]; then
            COMPREPLY=($(compgen -W "$(_cellbox_ports "${words[cmd_index+1]}")" -- "$cur"))
        fi
        ;;
    admin)
        case $nargs in
        1) COMPREPLY=($(compgen -W "key" -- "$cur")) ;;
        2) COMPREPLY=($(compgen -W "create ls revoke" -- "$cur")) ;;
        *) [[ ${words[cmd_index+2]} == create ]] && COMPREPLY=($(compgen -W "--tenant" -- "$cur")) ;;
        esac
        ;;
    esac
}
complete -F _cellbox cellbox
