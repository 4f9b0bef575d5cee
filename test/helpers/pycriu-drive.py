# Drives tscriu through Debian's pycriu, as a Python client of criu would: one request per
# call, the result as one JSON line on stdout. Run with /usr/bin/python3 (Debian's pycriu).
#   pycriu-drive.py swrk:/path/to/tscriu | sk:/path/to/socket  ACTION [ARGS...]
#   ACTION: version | check | features | dump PID DIR [leave_running] [parent=REL] | restore DIR
#           | pre_dump PID DIR [parent=REL]
#           | req TYPE [OPTS_JSON] (images_dir "fd:PATH" is sent as images_dir_fd) | raw HEX (sk: only)
#           | pidfd_store [each] PID DIR... (pre-dumps into each DIR but the last, a dump into
#             that, each with the previous as parent, all with one pidfd store socket; with
#             "each", only pre-dumps, each with a new socket)
import json, os, sys
import pycriu

how, action, args = sys.argv[1], sys.argv[2], sys.argv[3:]
c = pycriu.criu()
kind, _, where = how.partition(":")
if kind == "swrk":
    c.use_binary(where)
else:
    c.use_sk(where)
out = {}
try:
    if action == "version":
        req = pycriu.rpc.criu_req(); req.type = pycriu.rpc.VERSION
        r = c._send_req_and_recv_resp(req)
        out = {"success": r.success, "major": r.version.major_number, "minor": r.version.minor_number, "name": r.version.name}
    elif action == "features":
        req = pycriu.rpc.criu_req(); req.type = pycriu.rpc.FEATURE_CHECK
        req.features.mem_track = True; req.features.lazy_pages = True; req.features.pidfd_store = True
        r = c._send_req_and_recv_resp(req)
        out = {"success": r.success, "mem_track": r.features.mem_track, "lazy_pages": r.features.lazy_pages, "pidfd_store": r.features.pidfd_store}
    elif action == "check":
        c.check()
        out = {"success": True}
    elif action in ("dump", "pre_dump"):
        fd = os.open(args[1], os.O_DIRECTORY)
        c.opts.images_dir_fd = fd
        c.opts.pid = int(args[0])
        c.opts.log_file = "dump.log"
        c.opts.log_level = 4
        if "leave_running" in args[2:]:
            c.opts.leave_running = True
        for a in args[2:]:
            if a.startswith("parent="):
                c.opts.parent_img = a[len("parent="):]
        r = c.dump() if action == "dump" else c.pre_dump()
        out = {"success": True, "restored": r.restored}
    elif action == "restore":
        fd = os.open(args[0], os.O_DIRECTORY)
        c.opts.images_dir_fd = fd
        c.opts.log_file = "restore.log"
        c.opts.log_level = 4
        r = c.restore()
        out = {"success": True, "pid": r.pid}
    elif action == "req":
        # req TYPE OPTS_JSON: any request, the whole answer back (cr_errmsg included)
        from google.protobuf import json_format
        req = pycriu.rpc.criu_req(); req.type = pycriu.rpc.criu_req_type.Value(args[0])
        opts = json.loads(args[1]) if len(args) > 1 else None
        if opts is not None:
            if "images_dir" in opts and opts["images_dir"].startswith("fd:"):
                opts["images_dir_fd"] = os.open(opts.pop("images_dir")[3:], os.O_DIRECTORY)
            json_format.ParseDict(opts, req.opts)
        r = c._send_req_and_recv_resp(req)
        out = {"success": r.success, "type": pycriu.rpc.criu_req_type.Name(r.type), "cr_errno": r.cr_errno, "cr_errmsg": r.cr_errmsg}
        if r.HasField("ps"):
            out["ps"] = {"pid": r.ps.pid, "port": r.ps.port}
    elif action == "pidfd_store":
        import socket
        each = args[0] == "each"
        if each:
            args = args[1:]
        sk = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        pid, dirs = int(args[0]), args[1:]
        for i, d in enumerate(dirs):
            if each and i > 0:
                sk = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            c.opts.Clear()
            c.opts.images_dir_fd = os.open(d, os.O_DIRECTORY)
            c.opts.pid = pid
            c.opts.log_file = "dump.log"
            c.opts.log_level = 4
            c.opts.pidfd_store_sk = sk.fileno()
            if i > 0:
                c.opts.parent_img = "../" + os.path.basename(dirs[i - 1])
            if each or i < len(dirs) - 1:
                c.pre_dump()
            else:
                c.dump()
        out = {"success": True, "store": sk.getsockname().decode("latin1") if isinstance(sk.getsockname(), bytes) else sk.getsockname()}
    elif action == "raw":
        # raw HEX: these bytes as the request (fields this pycriu's rpc.proto predates), the answer back
        import socket
        sk = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sk.connect(where)
        sk.send(bytes.fromhex(args[0]))
        r = pycriu.rpc.criu_resp()
        r.ParseFromString(sk.recv(len(sk.recv(1, socket.MSG_TRUNC | socket.MSG_PEEK))))
        out = {"success": r.success, "type": pycriu.rpc.criu_req_type.Name(r.type), "cr_errno": r.cr_errno, "cr_errmsg": r.cr_errmsg}
    else:
        raise SystemExit("unknown action " + action)
except pycriu.CRIUExceptionExternal as e:
    out = {"success": False, "errno": e.errno, "error": str(e)}
except pycriu.CRIUException as e:
    out = {"success": False, "error": str(e)}
print(json.dumps(out))
