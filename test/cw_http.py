#!/usr/bin/env python3
"""The HTTP client of a test script (test/cw_http.sh): one process for all of
a script's requests, where a curl start per request costs ~40 ms of CPU (its
dynamic linking: libcurl's dozens of libraries) and a test makes hundreds.
It also answers the simplest jq filters (cw_jq: a path such as
.items[0].id, maybe with "| length"), a jq start costing ~30 ms of CPU.

One request per line on stdin, fields separated by tabs:
    METHOD  URL  OUTFILE  AUTH  BODYFILE
AUTH: a bearer token or empty; BODYFILE: the request body's file (sent as
application/json, as the tests' curl calls did) or empty for no body.
Answers one line: the HTTP status, or 000 when there was no answer, or
"curl" for a request that http.client refuses to send as given (a space or
a non-ASCII byte in the URL, a line break in a header: tests of bad input)
and which the shell side then makes with curl. The response body is written
to OUTFILE (as curl -o), also when it is empty. Each request has its own
connection, closed after it, as with curl.

Or a line "J<tab>FILE<tab>PATH<tab>LENGTH" (LENGTH 1: PATH | length): the
answer is "=" and jq -r's output line, or "jq" when jq must answer.
"""
import http.client
import json
import re
import sys
import urllib.parse

# jq filters answered here (cw_jq): a path of names and indexes, maybe
# followed by "| length"
PATH_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[([0-9]+)\]")


def request(method, url, outfile, auth, bodyfile):
    u = urllib.parse.urlsplit(url)
    path = u.path or "/"
    if u.query:
        path += "?" + u.query
    headers = {"Accept": "*/*"}
    if auth:
        headers["Authorization"] = "Bearer " + auth
    body = None
    if bodyfile:
        with open(bodyfile, "rb") as f:
            body = f.read()
        headers["Content-Type"] = "application/json"
        headers["Content-Length"] = str(len(body))
    conn = http.client.HTTPConnection(u.hostname, u.port or 80)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for k, v in headers.items():
            conn.putheader(k, v)
    except ValueError:  # http.client.InvalidURL, UnicodeEncodeError
        conn.close()
        return "curl"
    try:
        conn.endheaders(body)
        resp = conn.getresponse()
        data = resp.read()
    except (OSError, http.client.HTTPException):
        return "000"
    finally:
        conn.close()
    with open(outfile, "wb") as f:
        f.write(data)
    return "%03d" % resp.status


def jq_simple(path, length, file):
    """jq -r's one output line for the filter, or None where jq itself must
    answer: anything but a string without line breaks, an integer, a
    boolean or null; a step jq would refuse; a file that is not one JSON
    value."""
    try:
        with open(file, "rb") as f:
            v = json.loads(f.read())
    except (OSError, ValueError):
        return None
    for m in PATH_STEP.finditer(path):
        if v is None:
            continue
        if m.group(1) is not None:
            if not isinstance(v, dict):
                return None
            v = v.get(m.group(1))
        else:
            if not isinstance(v, list):
                return None
            i = int(m.group(2))
            v = v[i] if i < len(v) else None
    if length:
        if v is None:
            v = 0
        elif isinstance(v, (list, dict, str)):
            v = len(v)
        else:
            return None
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        # jq's numbers are doubles, printed exactly up to 2^53
        return str(v) if abs(v) < 2**53 else None
    if isinstance(v, str) and not any(c in v for c in "\n\r\0"):
        return v
    return None


def main():
    for line in sys.stdin:
        fields = line.rstrip("\n").split("\t")
        if len(fields) == 4 and fields[0] == "J":  # J FILE PATH LENGTH
            v = jq_simple(fields[2], fields[3] == "1", fields[1])
            print("jq" if v is None else "=" + v, flush=True)
            continue
        if len(fields) != 5:
            print("cw_http.py: bad request line %r" % line, file=sys.stderr)
            print("000", flush=True)
            continue
        print(request(*fields), flush=True)


if __name__ == "__main__":
    main()
