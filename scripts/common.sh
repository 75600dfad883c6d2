# Shared by services.sh and flume.sh (sourced): root for apt-get, Debian packages, and jars
# from Maven Central. The caller defines say() and LOG_DIR.

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo -n "$@"; else
        say "need root or sudo to run: $*"; exit 1; fi
}

apt_install() {
    local missing=()
    for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    say "installing ${missing[*]} (log: $LOG_DIR/apt.log)"
    export DEBIAN_FRONTEND=noninteractive
    # the package lists may be missing or stale on a fresh machine
    if ! as_root apt-get install -y -q --no-install-recommends "${missing[@]}" >"$LOG_DIR/apt.log" 2>&1; then
        as_root apt-get update -q >>"$LOG_DIR/apt.log" 2>&1
        as_root apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$LOG_DIR/apt.log" 2>&1 || {
            tail -20 "$LOG_DIR/apt.log" >&2; say "apt-get install ${missing[*]} failed"; exit 1; }
    fi
}

# maven_jars POM DIR NAME: POM's dependencies into DIR (java and mvn installed if missing),
# fetched once and again only when POM changed
maven_jars() {
    local pom="$1" dir="$2" name="$3" want
    command -v java >/dev/null || apt_install openjdk-17-jre-headless
    command -v mvn >/dev/null || apt_install maven
    want="$(sha256sum "$pom" | cut -d' ' -f1)"
    if [ "$(cat "$dir/.pom.sha256" 2>/dev/null)" != "$want" ]; then
        say "fetching $name's jars from Maven Central (log: $LOG_DIR/$name-mvn.log)"
        rm -rf "$dir"
        mvn -B -q -f "$pom" dependency:copy-dependencies -DoutputDirectory="$dir" >"$LOG_DIR/$name-mvn.log" 2>&1 || {
            tail -20 "$LOG_DIR/$name-mvn.log" >&2; say "mvn dependency:copy-dependencies failed"; exit 1; }
        echo "$want" > "$dir/.pom.sha256"
    fi
}
