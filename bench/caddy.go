package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// pluginModule is the module whose ./cmd/caddy the harness builds.
const pluginModule = "github.com/webhooker/caddy-webhooker"

// buildCaddy builds ./cmd/caddy of the plugin's module into dir: of the working
// tree, or, if rev is set, of that git revision (exported with git archive).
func buildCaddy(dir, rev string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	if rev != "" {
		src := filepath.Join(dir, "src")
		if err := os.Mkdir(src, 0o755); err != nil {
			return "", err
		}
		export := exec.Command("sh", "-c", `git -C "$1" archive "$2" | tar -x -C "$3"`, "sh", root, rev, src)
		if out, err := export.CombinedOutput(); err != nil {
			return "", fmt.Errorf("git archive %s: %v\n%s", rev, err, out)
		}
		root = src
	}
	bin := filepath.Join(dir, "caddy")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/caddy")
	cmd.Dir = root
	// The plugin's module alone, as a user builds it: not the workspace,
	// whose other modules (this harness, the browser tests) could raise
	// the version of a shared dependency.
	cmd.Env = append(os.Environ(), "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/caddy: %v\n%s", err, out)
	}
	return bin, nil
}

// moduleRoot is the directory of the plugin's module: the root of the
// workspace when run from there (go.work), or the replacement in bench's own
// go.mod when run inside bench/.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", pluginModule).Output()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			err = fmt.Errorf("%w: %s", err, bytes.TrimSpace(exit.Stderr))
		}
		return "", fmt.Errorf("go list -m %s (run bench from inside the caddy-webhooker repository): %w", pluginModule, err)
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" {
		return "", fmt.Errorf("go list -m %s: no directory: run bench from inside the caddy-webhooker repository", pluginModule)
	}
	return dir, nil
}

// forbiddenPorts are used by other things on this machine: Caddy's default
// admin endpoint, the Quick start's site, and the in-process Caddy of the
// caddymodule tests (2999, 9080) and of the browser tests (2998, 9082).
var forbiddenPorts = map[int]bool{2019: true, 2998: true, 2999: true, 8080: true, 9080: true, 9082: true}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() int {
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			panic(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !forbiddenPorts[port] {
			return port
		}
	}
}

// site is one Caddy configuration: the admin endpoint on its own port, the
// webhooker app with its options and webhooks, and one plain-HTTP site on
// loopback whose /hooks/* is served by webhooker (or by respond 200).
type site struct {
	admin, port int
	dataDir     string
	options     []string // lines of the webhooker global option
	webhooks    string   // webhook blocks
	plain       bool     // respond 200 instead of webhooker
	extra       []string // more lines in the site block
}

// synchronous is the -synchronous flag: the webhooker option of every
// check's Caddyfile ("" leaves the default, full).
var synchronous string

func newSite(dir string) site {
	return site{admin: freePort(), port: freePort(), dataDir: filepath.Join(dir, "data")}
}

func (s site) caddyfile() string {
	var b strings.Builder
	fmt.Fprintf(&b, "{\n\tadmin 127.0.0.1:%d\n\tpersist_config off\n", s.admin)
	if !s.plain {
		fmt.Fprintf(&b, "\twebhooker {\n\t\tdata_dir %s\n", s.dataDir)
		if synchronous != "" {
			fmt.Fprintf(&b, "\t\tsynchronous %s\n", synchronous)
		}
		for _, o := range s.options {
			fmt.Fprintf(&b, "\t\t%s\n", o)
		}
		b.WriteString(s.webhooks)
		b.WriteString("\t}\n")
	}
	fmt.Fprintf(&b, "}\n\nhttp://:%d {\n\tbind 127.0.0.1\n", s.port)
	for _, l := range s.extra {
		fmt.Fprintf(&b, "\t%s\n", l)
	}
	if s.plain {
		b.WriteString("\trespond /hooks/* 200\n")
	} else {
		b.WriteString("\twebhooker /hooks/*\n")
	}
	b.WriteString("}\n")
	return b.String()
}

func (s site) url(key string) string { return fmt.Sprintf("http://127.0.0.1:%d/hooks/%s", s.port, key) }

// webhook is a webhook block with one entrypoint; targets are target lines
// (or blocks) as in the Caddyfile.
func webhook(name, key string, targets ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\t\twebhook %s {\n\t\t\tentrypoint %s\n", name, key)
	for _, t := range targets {
		for _, line := range strings.Split(strings.TrimRight(t, "\n"), "\n") {
			fmt.Fprintf(&b, "\t\t\t%s\n", line)
		}
	}
	b.WriteString("\t\t}\n")
	return b.String()
}

// httpTarget is an http target block; options are its option lines.
func httpTarget(name, url string, options ...string) string {
	if len(options) == 0 {
		return fmt.Sprintf("target %s http %s", name, url)
	}
	return fmt.Sprintf("target %s http %s {\n\t%s\n}", name, url, strings.Join(options, "\n\t"))
}

// caddyProc is a running Caddy.
type caddyProc struct {
	cmd     *exec.Cmd
	dir     string
	logPath string
	started time.Time
	done    chan struct{}
}

var (
	runningMu sync.Mutex
	running   = map[*caddyProc]bool{}
)

// killAll kills every Caddy this process started and has not stopped.
func killAll() {
	runningMu.Lock()
	procs := make([]*caddyProc, 0, len(running))
	for p := range running {
		procs = append(procs, p)
	}
	runningMu.Unlock()
	for _, p := range procs {
		p.kill()
	}
}

// startCaddy writes the Caddyfile into dir and runs the binary on it, with
// HOME and XDG dirs inside dir. Its log goes to dir/caddy.log.
func startCaddy(bin, dir, caddyfile string) (*caddyProc, error) {
	cfgPath := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(cfgPath, []byte(caddyfile), 0o600); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "caddy.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "run", "--config", cfgPath, "--adapter", "caddyfile")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// If bench dies, so does its Caddy.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p := &caddyProc{cmd: cmd, dir: dir, logPath: logPath, done: make(chan struct{})}
	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, err
	}
	runningMu.Lock()
	running[p] = true
	runningMu.Unlock()
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		runningMu.Lock()
		delete(running, p)
		runningMu.Unlock()
		close(p.done)
	}()
	return p, nil
}

func (p *caddyProc) pid() int { return p.cmd.Process.Pid }

func (p *caddyProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitReady polls ready until it holds; it fails if Caddy exits first.
func (p *caddyProc) waitReady(timeout time.Duration, ready func() bool) (time.Duration, error) {
	deadline := time.Now().Add(timeout)
	for !ready() {
		if p.exited() {
			return 0, fmt.Errorf("caddy exited while starting:\n%s", p.logTail(20))
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("caddy not ready after %s:\n%s", timeout, p.logTail(20))
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(p.started), nil
}

// stop asks Caddy to stop (SIGINT, a graceful stop) and kills it if it has
// not within 30 s.
func (p *caddyProc) stop() {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		logf("   caddy did not stop within 30s of SIGINT: SIGKILL")
		p.kill()
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *caddyProc) kill() {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

func (p *caddyProc) logTail(n int) string {
	b, _ := os.ReadFile(p.logPath)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// load posts a Caddyfile to the admin API (POST /load, text/caddyfile).
func load(admin int, caddyfile string) error {
	req, err := http.NewRequest(http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/load", admin), strings.NewReader(caddyfile))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "text/caddyfile")
	// Reload even if the config did not change.
	req.Header.Set("Cache-Control", "must-revalidate")
	client := &http.Client{Timeout: 60 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var body bytes.Buffer
	_, _ = body.ReadFrom(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST /load: %s: %s", resp.Status, strings.TrimSpace(body.String()))
	}
	return nil
}

// procStats is what /proc says about a process.
type procStats struct {
	at       time.Time
	cpuTicks uint64 // utime + stime, in clock ticks (USER_HZ = 100 on Linux)
	rssKB    uint64 // VmRSS
	hwmKB    uint64 // VmHWM: peak RSS
	threads  int
	fds      int
	ctxSw    uint64 // voluntary + involuntary context switches of all threads
}

const clockTicks = 100 // USER_HZ: fixed at 100 for the /proc ABI on Linux

func (s procStats) cpu() time.Duration { return time.Duration(s.cpuTicks) * time.Second / clockTicks }

func readProc(pid int) (procStats, error) {
	s := procStats{at: time.Now()}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// Fields after the command name, which is in parentheses: state is
	// field 3 of proc(5), utime 14, stime 15.
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	if len(f) < 13 {
		return s, fmt.Errorf("short /proc/%d/stat", pid)
	}
	utime, _ := strconv.ParseUint(f[11], 10, 64)
	stime, _ := strconv.ParseUint(f[12], 10, 64)
	s.cpuTicks = utime + stime
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		n, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			s.rssKB = n
		case "VmHWM":
			s.hwmKB = n
		case "Threads":
			s.threads = int(n)
		}
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return s, err
	}
	s.fds = len(fds)
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, t.Name()))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.HasSuffix(k, "ctxt_switches") {
				n, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
				s.ctxSw += n
			}
		}
	}
	return s, nil
}

func (p *caddyProc) stats() procStats {
	s, err := readProc(p.pid())
	if err != nil {
		logf("   reading /proc of caddy: %v", err)
	}
	return s
}

// cores is the CPU used between two readings, in cores (1.0 = one full core).
func cores(a, b procStats) float64 {
	wall := b.at.Sub(a.at)
	if wall <= 0 {
		return 0
	}
	return float64(b.cpu()-a.cpu()) / float64(wall)
}

// waitSettled waits until Caddy used at most maxCPU over a whole window, and
// returns how long that took from its start.
func (p *caddyProc) waitSettled(window, maxCPU, timeout time.Duration) (time.Duration, error) {
	deadline := time.Now().Add(timeout)
	prev := p.stats()
	for {
		time.Sleep(window)
		cur := p.stats()
		if cur.cpu()-prev.cpu() <= maxCPU {
			return prev.at.Sub(p.started), nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("caddy still busy after %s (%.2f cores over the last %s)", timeout, cores(prev, cur), window)
		}
		prev = cur
	}
}
