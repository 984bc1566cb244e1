# Shared by scripts/test and scripts/lab (sourced, not run): makes sure the machine has what
# building and testing qkdn needs, installing it when it can (as root, or with password-less
# sudo) and saying exactly what to install when it cannot.

# Debian packages for building: libyang is compiled from source by the yang5 crate (cmake, a C
# compiler, PCRE2); OpenSSL for the SKIP key provider's TLS-PSK listener.
QKDN_BUILD_PACKAGES="cmake gcc g++ make pkg-config libpcre2-dev libssl-dev"
# Debian packages for the tests: yanglint, a Python venv for pyang and the SKIP client (whose
# sslpsk3 dependency compiles against Python's and OpenSSL's headers), curl and jq for the tour.
QKDN_TEST_PACKAGES="libyang-tools python3-venv python3-dev curl jq"
# pyang release whose tree output the reference trees were made with.
QKDN_PYANG_VERSION="2.7.1"
# The SKIP encryptor client the SKIP tests drive (PyPI skip-qkd, with sslpsk3 for PSK mode).
QKDN_SKIP_QKD_VERSION="1.0.0"

qkdn_missing_packages() {
    local missing=""
    for pkg in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
            missing="$missing $pkg"
        fi
    done
    echo "$missing"
}

qkdn_install_packages() {
    local missing
    missing=$(qkdn_missing_packages "$@")
    [ -z "$missing" ] && return 0
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "qkdn: please install the equivalents of:$missing (this script knows apt only)" >&2
        return 1
    fi
    local sudo=""
    if [ "$(id -u)" != 0 ]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
            sudo="sudo"
        else
            echo "qkdn: missing packages:$missing" >&2
            echo "qkdn: install them with: sudo apt-get install -y$missing" >&2
            return 1
        fi
    fi
    echo "qkdn: installing$missing"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    # shellcheck disable=SC2086
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

qkdn_ensure_build_prerequisites() {
    if ! command -v cargo >/dev/null 2>&1; then
        echo "qkdn: cargo not found; install Rust 1.95 or newer from https://rustup.rs" >&2
        return 1
    fi
    # shellcheck disable=SC2086
    qkdn_install_packages $QKDN_BUILD_PACKAGES
}

qkdn_ensure_rust_components() {
    if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
        if command -v rustup >/dev/null 2>&1; then
            echo "qkdn: adding the rustfmt and clippy components"
            rustup component add rustfmt clippy
        else
            echo "qkdn: cargo fmt and cargo clippy are needed (rustup component add rustfmt clippy)" >&2
            return 1
        fi
    fi
}

qkdn_ensure_test_tools() {
    qkdn_ensure_rust_components
    # shellcheck disable=SC2086
    qkdn_install_packages $QKDN_TEST_PACKAGES
    if [ ! -x .venv/bin/pyang ] || ! .venv/bin/pyang --version 2>/dev/null | grep -q "$QKDN_PYANG_VERSION"; then
        echo "qkdn: creating .venv with pyang $QKDN_PYANG_VERSION"
        python3 -m venv .venv
        .venv/bin/pip install -q "pyang==$QKDN_PYANG_VERSION"
    fi
    if ! .venv/bin/pip show skip-qkd 2>/dev/null | grep -q "^Version: $QKDN_SKIP_QKD_VERSION"; then
        echo "qkdn: installing skip-qkd $QKDN_SKIP_QKD_VERSION in .venv"
        .venv/bin/pip install -q "skip-qkd==$QKDN_SKIP_QKD_VERSION"
    fi
}

# The compose test runs where a Docker client is installed (and then requires the daemon and a
# Compose tool: docker compose v2, or Debian's docker-compose, installed here when missing).
qkdn_docker_wanted() {
    command -v docker >/dev/null 2>&1
}

# The Docker daemon, started here when the client is installed but the daemon is not running
# (a machine booted without it); as root or with password-less sudo only.
qkdn_ensure_docker_daemon() {
    qkdn_docker_wanted || return 0
    docker info >/dev/null 2>&1 && return 0
    local sudo=""
    if [ "$(id -u)" != 0 ]; then
        sudo -n true 2>/dev/null || return 0
        sudo="sudo"
    fi
    echo "qkdn: the Docker daemon does not answer; starting it"
    if command -v systemctl >/dev/null 2>&1 && $sudo systemctl start docker 2>/dev/null; then
        :
    elif command -v service >/dev/null 2>&1 && $sudo service docker start >/dev/null 2>&1; then
        :
    elif command -v dockerd >/dev/null 2>&1; then
        $sudo sh -c 'nohup dockerd >/var/log/qkdn-dockerd.log 2>&1 &'
    fi
    for _ in $(seq 1 30); do
        docker info >/dev/null 2>&1 && return 0
        sleep 1
    done
    echo "qkdn: the Docker daemon did not start (see /var/log/qkdn-dockerd.log)" >&2
}

qkdn_ensure_compose() {
    qkdn_docker_wanted || return 0
    qkdn_ensure_docker_daemon
    if docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null 2>&1; then
        return 0
    fi
    qkdn_install_packages docker-compose
}
