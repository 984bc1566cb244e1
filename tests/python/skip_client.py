"""Drives the `skip-qkd` client from PyPI (a SKIP encryptor's side, written by others) against a
qkdn key provider, for the process tests. One request per run; prints the answer as JSON, or
one line `ERROR <what the client raised>` and exits with 1.

    skip_client.py cert HOST:PORT SERVER_ID CA CERT KEY  REQUEST...
    skip_client.py psk  HOST:PORT SERVER_ID IDENTITY HEX REQUEST...

REQUEST: `capabilities`, `key REMOTE [SIZE]`, `key-by-id KEY_ID REMOTE`, `entropy [BITS]`.

skip-qkd 1.0.0's PSK-only mode sets `check_hostname = True` before `verify_mode = CERT_NONE`,
which Python's ssl module refuses (ValueError) before any connection is made. A PSK handshake
authenticates no certificate, so there is no host name to check: this script makes the
client's PSK context ignore `check_hostname`, its only change; everything else (the cipher
string "PSK", TLS 1.2 at most, the identity callback, the HTTP exchange) runs as published.
"""

import json
import ssl
import sys

import skip_qkd.skip_qkd as skip


class _PskContextWithoutHostNames(skip.SSLPSKContext):
    @property
    def check_hostname(self):
        return False

    @check_hostname.setter
    def check_hostname(self, _value):
        ssl.SSLContext.check_hostname.__set__(self, False)


def client(args):
    mode, address, server_id = args[0], args[1], args[2]
    if mode == "cert":
        ca, cert, key = args[3:6]
        return skip.SkipQKDClient(address, server_id, mtls_config=skip.MTLSConfig(ca, cert, key)), args[6:]
    if mode == "psk":
        skip.SSLPSKContext = _PskContextWithoutHostNames
        identity, key = args[3], bytes.fromhex(args[4])
        return skip.SkipQKDClient(address, server_id, psk_config=skip.PSKConfig(identity, key)), args[5:]
    raise SystemExit(f"unknown mode {mode}")


def main():
    provider, request = client(sys.argv[1:])
    try:
        with provider:
            if request[0] == "capabilities":
                answer = provider.capabilities()
            elif request[0] == "key":
                size = int(request[2]) if len(request) > 2 else None
                answer = provider.request_key(request[1], size)
            elif request[0] == "key-by-id":
                answer = provider.fetch_key_by_id(request[1], request[2])
            elif request[0] == "entropy":
                answer = provider.entropy(int(request[1]) if len(request) > 1 else None)
            else:
                raise SystemExit(f"unknown request {request[0]}")
    except Exception as error:  # the client's own errors, reported to the test
        print(f"ERROR {type(error).__name__}: {error}")
        sys.exit(1)
    print(json.dumps(answer))


main()
