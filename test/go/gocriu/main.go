// gocriu drives a criu binary (tscriu, in the tests) through Debian's go-criu
// (golang-github-checkpoint-restore-go-criu-dev, go-criu 5.3) exactly as a Go client of
// criu does: criu.MakeCriu, SetCriuPath, then one call per run. The answer is one JSON
// line on stdout; test/rpc-go.test.ts builds this program and reads it.
//
//	gocriu CRIU version
//	gocriu CRIU features
//	gocriu CRIU dump PID DIR [leave_running] [parent=REL] [fail=STAGE]
//	gocriu CRIU pre_dump PID DIR
//	gocriu CRIU restore DIR
//	gocriu CRIU refused PID DIR [CONFIG_FILE]
//
// fail=STAGE makes the notify callback of that stage return an error, as a client that
// gives up mid-dump: go-criu then closes the connection without answering.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"

	criu "github.com/checkpoint-restore/go-criu/v5"
	"github.com/checkpoint-restore/go-criu/v5/rpc"
	"google.golang.org/protobuf/proto"
)

// notify records each action-script stage go-criu passes on, with the pid where criu
// sends one (setup-namespaces, post-restore), and fails the stage named by fail.
type notify struct {
	stages []string
	pid    int32
	fail   string
}

func (n *notify) stage(name string, pid int32) error {
	if pid != 0 {
		n.stages = append(n.stages, fmt.Sprintf("%s %d", name, pid))
	} else {
		n.stages = append(n.stages, name)
	}
	if name == n.fail {
		return errors.New("gocriu fails " + name + " on purpose")
	}
	return nil
}

func (n *notify) PreDump() error                  { return n.stage("pre-dump", 0) }
func (n *notify) PostDump() error                 { return n.stage("post-dump", 0) }
func (n *notify) PreRestore() error               { return n.stage("pre-restore", 0) }
func (n *notify) NetworkLock() error              { return n.stage("network-lock", 0) }
func (n *notify) NetworkUnlock() error            { return n.stage("network-unlock", 0) }
func (n *notify) PostSetupNamespaces() error      { return n.stage("post-setup-namespaces", 0) }
func (n *notify) PostResume() error               { return n.stage("post-resume", 0) }
func (n *notify) SetupNamespaces(pid int32) error { return n.stage("setup-namespaces", pid) }
func (n *notify) PostRestore(pid int32) error {
	n.pid = pid
	return n.stage("post-restore", pid)
}

func imagesDir(path string) *int32 {
	fd, err := syscall.Open(path, syscall.O_DIRECTORY|syscall.O_RDONLY, 0)
	if err != nil {
		fail(fmt.Errorf("open %s: %w", path, err))
	}
	return proto.Int32(int32(fd))
}

func pidArg(s string) *int32 {
	pid, err := strconv.Atoi(s)
	if err != nil {
		fail(fmt.Errorf("not a pid: %q", s))
	}
	return proto.Int32(int32(pid))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "gocriu:", err)
	os.Exit(2)
}

// result is the JSON line: success, go-criu's error text when it failed, and the rest.
func result(err error, more map[string]interface{}) map[string]interface{} {
	out := map[string]interface{}{"success": err == nil}
	if err != nil {
		out["error"] = err.Error()
	}
	for k, v := range more {
		out[k] = v
	}
	return out
}

// featuresOnTheWire sends FEATURE_CHECK the way runc does (its own swrk exchange with
// go-criu's rpc types): go-criu 5.3's FeatureCheck hands back the features it was asked
// for, not criu's answer, so the answer is read here.
func featuresOnTheWire(path string, asked *rpc.CriuFeatures) (*rpc.CriuFeatures, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_SEQPACKET|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	cln := os.NewFile(uintptr(fds[0]), "criu-client")
	defer cln.Close()
	srv := os.NewFile(uintptr(fds[1]), "criu-server")
	cmd := exec.Command(path, "swrk", "3")
	cmd.ExtraFiles = []*os.File{srv}
	err = cmd.Start()
	srv.Close()
	if err != nil {
		return nil, err
	}
	defer func() { _ = cmd.Wait() }()
	t := rpc.CriuReqType_FEATURE_CHECK
	req, err := proto.Marshal(&rpc.CriuReq{Type: &t, Features: asked})
	if err != nil {
		return nil, err
	}
	if _, err = cln.Write(req); err != nil {
		return nil, err
	}
	buf := make([]byte, 4096)
	n, err := cln.Read(buf)
	if err != nil {
		return nil, err
	}
	resp := &rpc.CriuResp{}
	if err = proto.Unmarshal(buf[:n], resp); err != nil {
		return nil, err
	}
	if !resp.GetSuccess() || resp.GetType() != t {
		return nil, fmt.Errorf("FEATURE_CHECK answered %v: %s", resp.GetType(), resp.GetCrErrmsg())
	}
	return resp.GetFeatures(), nil
}

func main() {
	if len(os.Args) < 3 {
		fail(errors.New("usage: gocriu CRIU ACTION [ARGS...]"))
	}
	path, action, args := os.Args[1], os.Args[2], os.Args[3:]
	c := criu.MakeCriu()
	c.SetCriuPath(path)
	var out map[string]interface{}
	switch action {
	case "version":
		v, err := c.GetCriuVersion()
		var atLeast bool
		if err == nil {
			// runc's own check before a checkpoint: criu 3.0 or later (the VERSION RPC)
			atLeast, err = c.IsCriuAtLeast(30000)
		}
		out = result(err, map[string]interface{}{"version": v, "at_least_3_0": atLeast})
	case "features":
		asked := &rpc.CriuFeatures{MemTrack: proto.Bool(true), LazyPages: proto.Bool(true), PidfdStore: proto.Bool(true)}
		_, err := c.FeatureCheck(asked)
		more := map[string]interface{}{}
		if err == nil {
			var f *rpc.CriuFeatures
			f, err = featuresOnTheWire(path, &rpc.CriuFeatures{MemTrack: proto.Bool(true), LazyPages: proto.Bool(true), PidfdStore: proto.Bool(true)})
			if err == nil {
				more = map[string]interface{}{"mem_track": f.GetMemTrack(), "lazy_pages": f.GetLazyPages(), "pidfd_store": f.GetPidfdStore()}
			}
		}
		out = result(err, more)
	case "dump", "pre_dump":
		if len(args) < 2 {
			fail(errors.New("dump PID DIR [leave_running] [parent=REL] [fail=STAGE]"))
		}
		n := &notify{}
		opts := &rpc.CriuOpts{
			ImagesDirFd: imagesDir(args[1]),
			Pid:         pidArg(args[0]),
			LogLevel:    proto.Int32(4),
			LogFile:     proto.String(strings.ReplaceAll(action, "_", "-") + ".log"),
			// as runc sends them: false asks for nothing
			ShellJob:     proto.Bool(false),
			LeaveRunning: proto.Bool(false),
		}
		for _, a := range args[2:] {
			switch {
			case a == "leave_running":
				opts.LeaveRunning = proto.Bool(true)
			case strings.HasPrefix(a, "parent="):
				opts.ParentImg = proto.String(strings.TrimPrefix(a, "parent="))
				opts.TrackMem = proto.Bool(true)
			case strings.HasPrefix(a, "fail="):
				n.fail = strings.TrimPrefix(a, "fail=")
			default:
				fail(fmt.Errorf("unknown dump argument %q", a))
			}
		}
		var err error
		if action == "dump" {
			err = c.Dump(opts, n)
		} else {
			err = c.PreDump(opts, n)
		}
		out = result(err, map[string]interface{}{"notify": n.stages})
	case "restore":
		if len(args) < 1 {
			fail(errors.New("restore DIR"))
		}
		n := &notify{}
		opts := &rpc.CriuOpts{ImagesDirFd: imagesDir(args[0]), LogLevel: proto.Int32(4), LogFile: proto.String("restore.log")}
		err := c.Restore(opts, n)
		// go-criu's Restore gives no pid: a client learns it from post-restore
		out = result(err, map[string]interface{}{"pid": n.pid, "notify": n.stages})
	case "refused":
		// what tscriu cannot do yet: refused by name, nothing done to the task
		if len(args) < 2 {
			fail(errors.New("refused PID DIR [CONFIG_FILE]"))
		}
		opts := &rpc.CriuOpts{
			ImagesDirFd: imagesDir(args[1]),
			Pid:         pidArg(args[0]),
			LogFile:     proto.String("refused.log"),
			AutoExtMnt:  proto.Bool(true),
			ExtSharing:  proto.Bool(true),
		}
		if len(args) > 2 {
			// as runc sends /etc/criu/runc.conf with every request
			opts.ConfigFile = proto.String(args[2])
		}
		out = result(c.Dump(opts, nil), nil)
	default:
		fail(fmt.Errorf("unknown action %q", action))
	}
	line, err := json.Marshal(out)
	if err != nil {
		fail(err)
	}
	fmt.Println(string(line))
}
