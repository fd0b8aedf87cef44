#!/usr/bin/env bash
# netconfd-fabric.sh - a small fabric of yuma123 netconfd NETCONF devices on 127.0.0.1 for netmig's interop tier.
#
#   netconfd-fabric.sh install        # root: apt packages (netconfd, yangcli, sshd), login user, client key
#   netconfd-fabric.sh start          # 4 netconfd instances behind one private sshd (no-op if already running)
#   netconfd-fabric.sh wait [TIMEOUT] # until every device answers a real <hello> + <close-session> (default 30 s)
#   netconfd-fabric.sh stop           # SIGTERM by recorded PID (netconfd instances + private sshd)
#   netconfd-fabric.sh status         # exit 0 if the sshd and every netconfd are alive
#   netconfd-fabric.sh env            # prints: export NETMIG_INTEROP_ENDPOINTS=... NETMIG_INTEROP_KNOWN_HOSTS=...
#
# Devices (name  model  role         NETCONF/SSH port):
#   src-acme     acme   source       BASE+0   loads yang/acme-fabric.yang
#   src-ietf     ietf   source       BASE+1   loads yang/netmig-device.yang (+ ietf-interfaces, netmig-vm-bundle,
#   dst-acme     acme   destination  BASE+2                                    iana-if-type)
#   dst-ietf     ietf   destination  BASE+3
# Every start gives every device an empty startup datastore.
#
# Env: NETMIG_NC_STATE     state dir (default /tmp/netmig-netconfd; keep short: unix socket paths must be < 108 bytes)
#      NETMIG_NC_BASEPORT  first port (default 17830; stay below 32768, the ephemeral range starts there)
#      NETMIG_NC_USER / NETMIG_NC_PASS  SSH login (default netmig / netmig-interop). Not root: the sshd runs as
#                          you, so the login is you and key auth only (password is written as null).
#      NETMIG_NC_IETF_DIR  directory of the IETF YANG modules (default: pyang's <sys.prefix>/share/yang/modules/ietf)
#      NETMIG_NC_PYTHON    python used to locate pyang's modules (default python3)
# Files in the state dir: endpoints.json, known_hosts, client_ed25519 (client key), ssh/ (sshd config, host key,
# log), DEVICE/ (argv, netconfd.pid, netconfd.log, data/startup-cfg.xml). Never touches /etc/ssh, port 22/830
# or /tmp/ncxserver.sock.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
YANG=$REPO/yang
STATE=${NETMIG_NC_STATE:-/tmp/netmig-netconfd}
BASE=${NETMIG_NC_BASEPORT:-17830}
PY=${NETMIG_NC_PYTHON:-python3}
if [ "$(id -u)" = 0 ]; then
    NC_USER=${NETMIG_NC_USER:-netmig}
    NC_PASS=${NETMIG_NC_PASS:-netmig-interop}
else
    NC_USER=$(id -un)   # a non-root sshd can only log in the user it runs as, with a key
    NC_PASS=""
fi
KEY=$STATE/client_ed25519
DEVICES=(src-acme src-ietf dst-acme dst-ietf)

die() { echo "netconfd-fabric: $*" >&2; exit 1; }
alive() {   # PID exists and is not a zombie (reaping by PID 1 can lag by seconds); no procps needed
    local st; st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) && [ -n "$st" ] && [ "$st" != Z ]
}
model_of() { echo "${1#*-}"; }
role_of() { case $1 in src-*) echo source ;; *) echo destination ;; esac; }
port_of() { local i; for i in "${!DEVICES[@]}"; do if [ "${DEVICES[$i]}" = "$1" ]; then echo $((BASE + i)); fi; done; }

ietf_dir() {
    if [ -n "${NETMIG_NC_IETF_DIR:-}" ]; then echo "$NETMIG_NC_IETF_DIR"; return; fi
    "$PY" - <<'EOF'
import os, sys
cands = [os.path.join(sys.prefix, "share", "yang", "modules", "ietf")]
try:
    import pyang
    # a pip install --user or a venv puts share/ next to lib/pythonX.Y/site-packages/pyang
    root = os.path.dirname(pyang.__file__)
    for _ in range(5):
        root = os.path.dirname(root)
        cands.append(os.path.join(root, "share", "yang", "modules", "ietf"))
except ImportError:
    pass
cands += ["/usr/local/share/yang/modules/ietf", "/usr/share/yang/modules/ietf"]
for c in cands:
    if os.path.isfile(os.path.join(c, "ietf-interfaces.yang")):
        print(c)
        break
EOF
}

cmd_install() {
    [ "$(id -u)" = 0 ] || die "install needs root (apt-get, useradd)"
    export DEBIAN_FRONTEND=noninteractive
    local guard=0   # never let a postinst start a system sshd on :22 (no-op where policy-rc.d already exists)
    if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; guard=1; fi
    local pkgs="netconfd yangcli openssh-server openssh-client" missing=0 t
    for t in netconfd yangcli /usr/sbin/sshd ssh ssh-keygen; do command -v "$t" >/dev/null 2>&1 || missing=1; done
    if [ "$missing" = 1 ]; then
        apt-get install -y -q --no-install-recommends $pkgs \
            || { apt-get update -q && apt-get install -y -q --no-install-recommends $pkgs; }
    fi
    if [ "$guard" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
    id "$NC_USER" >/dev/null 2>&1 || useradd -m -s /bin/sh "$NC_USER"   # a real shell: sshd runs the subsystem via it
    echo "$NC_USER:$NC_PASS" | chpasswd
    ensure_key
    local home; home=$(getent passwd "$NC_USER" | cut -d: -f6)
    install -d -m 700 -o "$NC_USER" -g "$NC_USER" "$home/.ssh"
    touch "$home/.ssh/authorized_keys"
    grep -qxF "$(cat "$KEY.pub")" "$home/.ssh/authorized_keys" || cat "$KEY.pub" >> "$home/.ssh/authorized_keys"
    chown "$NC_USER:" "$home/.ssh/authorized_keys"; chmod 600 "$home/.ssh/authorized_keys"
}

ensure_key() {
    mkdir -p "$STATE"
    [ -f "$KEY" ] || ssh-keygen -q -t ed25519 -N '' -C netmig-interop -f "$KEY"
    if [ "$(id -u)" != 0 ]; then   # non-root: authorize our own key for our own account
        mkdir -p -m 700 "$HOME/.ssh"; touch "$HOME/.ssh/authorized_keys"; chmod 600 "$HOME/.ssh/authorized_keys"
        grep -qxF "$(cat "$KEY.pub")" "$HOME/.ssh/authorized_keys" || cat "$KEY.pub" >> "$HOME/.ssh/authorized_keys"
    fi
}

running() {   # 0 if the sshd and every netconfd recorded in the state dir are alive
    [ -f "$STATE/ssh/sshd.pid" ] && alive "$(cat "$STATE/ssh/sshd.pid")" || return 1
    local d; for d in "${DEVICES[@]}"; do
        [ -f "$STATE/$d/netconfd.pid" ] && alive "$(cat "$STATE/$d/netconfd.pid")" || return 1
    done
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

launch() {   # launch device dir $1 from its saved argv; a stale socket makes netconfd exit 18
    local dir=$1 args
    rm -f "$dir/ncx.sock"
    mapfile -d '' -t args < "$dir/argv"
    ( cd "$dir" && exec netconfd "${args[@]}" ) </dev/null >/dev/null 2>&1 &
    echo $! > "$dir/netconfd.pid"
}

json_str() { if [ -z "$1" ]; then printf 'null'; else printf '"%s"' "$1"; fi; }   # our values need no escaping

cmd_start() {
    command -v netconfd >/dev/null || die "netconfd is not installed: run '$0 install' as root first"
    if running; then echo "netconfd-fabric: already running ($STATE)"; return 0; fi
    cmd_stop   # partial leftovers of an earlier run
    local ietf; ietf=$(ietf_dir)
    [ -n "$ietf" ] && [ -f "$ietf/ietf-interfaces.yang" ] \
        || die "cannot find pyang's IETF YANG modules (pip install pyang, or set NETMIG_NC_IETF_DIR)"
    local iana; iana=$(dirname "$ietf")/iana
    local modpath=$YANG:$ietf; [ -d "$iana" ] && modpath+=:$iana
    local pam=yes; [ "$(id -u)" = 0 ] || pam=no
    ensure_key
    mkdir -p "$STATE/ssh"
    if [ "$(id -u)" = 0 ]; then mkdir -p /run/sshd; chmod 755 /run/sshd; fi   # privsep dir, normally made by the service
    [ -f "$STATE/ssh/host_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C netmig-interop-host -f "$STATE/ssh/host_ed25519"
    local hostkey; hostkey=$(cut -d' ' -f1,2 "$STATE/ssh/host_ed25519.pub")
    local ports="" subsys="/usr/sbin/netconf-subsystem" d dir port mods known="" eps="" sep=""
    for d in "${DEVICES[@]}"; do
        port=$(port_of "$d"); dir=$STATE/$d
        if port_busy "$port"; then die "127.0.0.1:$port is already in use (set NETMIG_NC_BASEPORT)"; fi
        case $(model_of "$d") in
            acme) mods=("--module=$YANG/acme-fabric.yang") ;;
            ietf) mods=("--module=$YANG/netmig-device.yang")
                  if [ -f "$iana/iana-if-type.yang" ]; then mods+=("--module=$iana/iana-if-type.yang"); fi ;;
        esac
        mkdir -p "$dir/data"                                   # --yuma-home=DIR needs DIR/data (txid file)
        rm -f "$dir/data/"* "$dir/netconfd.log"                # fresh, empty device every start
        printf '<config xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"/>\n' > "$dir/data/startup-cfg.xml"
        printf '%s\0' --yuma-home="$dir" --modpath="$modpath" "${mods[@]}" \
            --ncxserver-sockname="$dir/ncx.sock" --port="$port" \
            --target=candidate --with-startup=true --startup="$dir/data/startup-cfg.xml" \
            --superuser="$NC_USER" \
            --log="$dir/netconfd.log" --log-append --log-level=info > "$dir/argv"
        launch "$dir"
        ports+="Port $port"$'\n'
        subsys+=" --ncxserver-sockname=$port@$dir/ncx.sock"   # the subsystem maps sshd's local port -> socket
        known+="[127.0.0.1]:$port $hostkey"$'\n'
        eps+="$sep  {\"name\": \"$d\", \"host\": \"127.0.0.1\", \"port\": $port, \"username\": \"$NC_USER\","
        eps+=" \"password\": $(json_str "$NC_PASS"), \"key_file\": \"$KEY\", \"model\": \"$(model_of "$d")\","
        eps+=" \"role\": \"$(role_of "$d")\"}"
        sep=$',\n'
    done
    cat > "$STATE/ssh/sshd_config" <<EOF
ListenAddress 127.0.0.1
${ports}HostKey $STATE/ssh/host_ed25519
PidFile $STATE/ssh/sshd.pid
AuthorizedKeysFile .ssh/authorized_keys
PasswordAuthentication yes
KbdInteractiveAuthentication no
PubkeyAuthentication yes
UsePAM $pam
PermitRootLogin no
AllowUsers $NC_USER
AllowTcpForwarding no
X11Forwarding no
PrintMotd no
UseDNS no
MaxStartups 200:30:400
Subsystem netconf $subsys
EOF
    printf '%s' "$known" > "$STATE/known_hosts"
    printf '[\n%s\n]\n' "$eps" > "$STATE/endpoints.json.tmp" && mv "$STATE/endpoints.json.tmp" "$STATE/endpoints.json"
    /usr/sbin/sshd -t -f "$STATE/ssh/sshd_config"
    rm -f "$STATE/ssh/sshd.log"
    /usr/sbin/sshd -f "$STATE/ssh/sshd_config" -E "$STATE/ssh/sshd.log"   # daemonizes, writes PidFile
    echo "netconfd-fabric: started ${#DEVICES[@]} devices on 127.0.0.1:$BASE-$((BASE + ${#DEVICES[@]} - 1)) ($STATE)"
}

nc_read_msg() {   # read fd $1 up to the NETCONF 1.0 end marker ]]>]]> (10 s per chunk)
    local fd=$1 buf="" chunk
    while IFS= read -r -d '>' -t 10 chunk <&"$fd"; do
        buf+="$chunk>"; if [[ $buf == *']]>]]>' ]]; then printf '%s' "$buf"; return 0; fi
    done
    return 1
}

hello_ok() {   # the whole path: TCP -> sshd (host key checked) -> netconf-subsystem -> unix socket -> netconfd
    local port=$1 out="" rc=1
    # Send the <rpc> only after the server <hello> arrived: if hello+rpc reach netconfd in the same read as the
    # subsystem's ncx-connect preamble, netconfd 2.13 sometimes drops the session ("IO failed on session").
    coproc NCSSH { exec timeout 15 ssh -q -T -F none -i "$KEY" -p "$port" -o BatchMode=yes -o IdentitiesOnly=yes \
        -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$STATE/known_hosts" -o ConnectTimeout=5 \
        "$NC_USER@127.0.0.1" -s netconf 2>/dev/null; }
    local in=${NCSSH[1]} outfd=${NCSSH[0]} pid=$NCSSH_PID
    printf '%s]]>]]>' '<?xml version="1.0" encoding="UTF-8"?><hello xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><capabilities><capability>urn:ietf:params:netconf:base:1.0</capability></capabilities></hello>' >&"$in" 2>/dev/null || true
    if out=$(nc_read_msg "$outfd") && [[ $out == *'capability:candidate:1.0'* ]]; then
        printf '%s]]>]]>' '<?xml version="1.0" encoding="UTF-8"?><rpc message-id="1" xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><close-session/></rpc>' >&"$in" 2>/dev/null || true
        if out=$(nc_read_msg "$outfd") && [[ $out == *'<ok/>'* ]]; then rc=0; fi
    fi
    kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
    return $rc
}

cmd_wait() {
    local deadline=$((SECONDS + ${1:-30})) d dir
    [ -f "$STATE/endpoints.json" ] && [ -f "$STATE/ssh/sshd.pid" ] || die "not started ($STATE)"
    for d in "${DEVICES[@]}"; do
        dir=$STATE/$d
        until hello_ok "$(port_of "$d")"; do
            alive "$(cat "$dir/netconfd.pid")" || { tail -n 20 "$dir/netconfd.log" >&2; die "$d: netconfd died"; }
            alive "$(cat "$STATE/ssh/sshd.pid")" || { tail -n 20 "$STATE/ssh/sshd.log" >&2; die "sshd died"; }
            [ "$SECONDS" -lt "$deadline" ] || { tail -n 5 "$dir/netconfd.log" "$STATE/ssh/sshd.log" >&2; die "$d not ready"; }
            sleep 0.1
        done
        echo "$d ready: 127.0.0.1:$(port_of "$d") model $(model_of "$d") role $(role_of "$d") (netconfd pid $(cat "$dir/netconfd.pid"))"
    done
}

term_and_wait() {   # SIGTERM all given PIDs at once, wait <= 5 s, SIGKILL leftovers.
    local pid t left  # netconfd takes ~1 s: it checks its shutdown flag once per 1-s select() timeout
    for pid in "$@"; do if alive "$pid"; then kill "$pid" 2>/dev/null || true; fi; done
    for t in $(seq 50); do
        left=0; for pid in "$@"; do if alive "$pid"; then left=1; fi; done
        [ $left = 0 ] && return 0; sleep 0.1
    done
    for pid in "$@"; do if alive "$pid"; then kill -9 "$pid" 2>/dev/null || true; fi; done
}

cmd_stop() {
    local f pids=()
    for f in "$STATE"/ssh/sshd.pid "$STATE"/*/netconfd.pid; do
        if [ -f "$f" ]; then pids+=("$(cat "$f")"); fi
    done
    [ ${#pids[@]} -eq 0 ] || term_and_wait "${pids[@]}"
    rm -f "$STATE"/*/netconfd.pid "$STATE"/*/ncx.sock "$STATE/ssh/sshd.pid"
}

cmd_env() {
    echo "export NETMIG_INTEROP_ENDPOINTS=$STATE/endpoints.json NETMIG_INTEROP_KNOWN_HOSTS=$STATE/known_hosts"
}

case ${1:-} in
    install) shift; cmd_install "$@" ;;
    start)   shift; cmd_start "$@" ;;
    wait)    shift; cmd_wait "$@" ;;
    stop)    shift; cmd_stop "$@" ;;
    env)     shift; cmd_env "$@" ;;
    status)  shift; if running; then echo "running ($STATE)"; else echo "not running ($STATE)"; exit 1; fi ;;
    *) sed -n '2,26p' "$0"; exit 2 ;;
esac
