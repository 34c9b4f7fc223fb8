"""Git's smart HTTP protocol on loopback, for the GitOps controllers of `e2e/stack gitops up`.

Serves every repository under ROOT at http://127.0.0.1:PORT/cgi-bin/git/<name>.git by running
Git's own `git http-backend` as a CGI program under Python's CGI server. Clones and fetches (what
Flux's source-controller and Argo CD's repo server do) and pushes (`http.receivepack` is on) work;
there is no authentication, so it binds to 127.0.0.1 only.

    python3 git_http_server.py PORT ROOT WWW

WWW is a directory of this server's own (it gets the `cgi-bin/git` script). Python 3.11 or 3.12:
`http.server.CGIHTTPRequestHandler` is gone from 3.13.
"""

import functools
import http.server
import os
import sys


class GitHandler(http.server.CGIHTTPRequestHandler):
    # CGI through subprocess rather than fork: the forking path switches to user `nobody` when the
    # server runs as root, and `nobody` may neither read nor write the repositories.
    have_fork = False


def main():
    port, root, www = int(sys.argv[1]), os.path.abspath(sys.argv[2]), os.path.abspath(sys.argv[3])
    os.makedirs(os.path.join(www, "cgi-bin"), exist_ok=True)
    script = os.path.join(www, "cgi-bin", "git")
    with open(script, "w") as f:
        f.write("#!/bin/sh\nexec git http-backend\n")
    os.chmod(script, 0o755)
    # Read by `git http-backend` from the environment the CGI server passes on.
    os.environ.update(GIT_PROJECT_ROOT=root, GIT_HTTP_EXPORT_ALL="1",
                      GIT_CONFIG_COUNT="1", GIT_CONFIG_KEY_0="http.receivepack", GIT_CONFIG_VALUE_0="true")
    handler = functools.partial(GitHandler, directory=www)
    http.server.ThreadingHTTPServer(("127.0.0.1", port), handler).serve_forever()


if __name__ == "__main__":
    main()
