"""One Python process per CLI test script (tests/cli/lib.sh: py_start, py, pyj).

Starting the interpreter (and importing numpy, torch or safetensors) costs 0.1 to 2 s each
time; a script that generates fixtures and checks JSON used to pay it dozens of times. The
script starts this server once; each `py ARGS...` call sends it a program (a file, or the
text of `-c CODE` or of a here-document) and its arguments, and the server runs it as
`python PROGRAM ARGS...` would: in the shell's directory and environment, sys.argv set,
__name__ == "__main__", stdout and stderr
(file descriptors 1 and 2, so subprocesses too) into files the shell prints, SystemExit as
the exit status, an uncaught exception as a traceback and status 1. Each program gets fresh
globals; imported modules stay loaded, which is the point.

Protocol (FIFOs, one request at a time): the shell writes the lines
    N, CWD, PROGRAM, OUT, ERR, ENV (a file of `env -0`), then the N arguments (no newline
    inside an argument)
and reads one line back: the exit status. "quit" (or end of file) stops the server."""

import os
import sys
import traceback


def run(program, args, out, err, env):
    with open(program, "rb") as f:
        code = compile(f.read(), program, "exec")
    saved_env = dict(os.environ)
    if env is not None:  # the shell's exported variables now (LD_PRELOAD for subprocesses...)
        os.environ.clear()
        os.environ.update(env)
    saved = os.dup(1), os.dup(2)
    sys.stdout.flush()
    sys.stderr.flush()
    fo = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    fe = os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fo, 1)
    os.dup2(fe, 2)
    os.close(fo)
    os.close(fe)
    status = 0
    sys.argv = [program] + args
    path0 = sys.path[0]
    sys.path[0] = os.path.dirname(os.path.abspath(program))  # as for `python PROGRAM`
    try:
        exec(code, {"__name__": "__main__", "__file__": program, "__builtins__": __builtins__})
    except SystemExit as e:
        if e.code is None:
            status = 0
        elif isinstance(e.code, int):
            status = e.code & 0xFF
        else:
            print(e.code, file=sys.stderr)
            status = 1
    except BaseException:
        traceback.print_exc()
        status = 1
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        sys.path[0] = path0
        try:
            sys.stdout.flush()
        except Exception:
            pass
        try:
            sys.stderr.flush()
        except Exception:
            pass
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])
    return status


def main():
    requests, replies = sys.argv[1], sys.argv[2]
    sys.path.insert(0, "")  # replaced by each program's folder while it runs
    sys.path.insert(1, os.path.dirname(os.path.abspath(__file__)))  # stwrite.py
    home = os.getcwd()
    with open(requests, "r") as rq, open(replies, "w") as rp:
        while True:
            line = rq.readline()
            if not line or line.strip() == "quit":
                return
            try:
                n = int(line)
            except ValueError:
                rp.write("2\n")
                rp.flush()
                continue
            cwd, program, out, err, envfile = (rq.readline().rstrip("\n") for _ in range(5))
            args = [rq.readline().rstrip("\n") for _ in range(n)]
            try:
                os.chdir(cwd)
            except OSError:
                os.chdir(home)
            env = None
            try:
                with open(envfile, "rb") as f:
                    env = dict(os.fsdecode(e).split("=", 1) for e in f.read().split(b"\0") if b"=" in e)
            except OSError:
                pass
            status = run(program, args, out, err, env)
            rp.write("%d\n" % status)
            rp.flush()


if __name__ == "__main__":
    main()
