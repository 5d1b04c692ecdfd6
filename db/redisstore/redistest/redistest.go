// Package redistest starts real redis-server processes for tests: standalone or a three-node cluster, on
// free loopback ports, each in a temporary directory, stopped by PID when the test ends. Debian's
// redis-server package provides the binaries (.ci/run installs it). Without them a test is skipped, except
// under CI=true, where it fails: a CI run must not pass by skipping the shared-store tests.
package redistest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Server is one redis-server process.
type Server struct {
	t        testing.TB
	Addr     string // 127.0.0.1:port
	Password string // requirepass, "" for none
	dir      string
	args     []string
	cmd      *exec.Cmd
	exited   chan struct{}
}

// Options tunes Start.
type Options struct {
	Password string   // requirepass
	Args     []string // more redis-server options, e.g. "--maxmemory", "1mb"
}

// need finds a binary, skipping the test when it is missing (failing it under CI=true).
func need(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not found: CI must install Debian's redis-server package (.ci/run does)", name)
		}
		t.Skipf("%s not found (apt-get install redis-server); skipping the shared-store test", name)
	}
	return p
}

// freePort returns a loopback port nobody listens on now (and, for a cluster node, whose bus port
// port+10000 is free too).
func freePort(t testing.TB, withBus bool) int {
	t.Helper()
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("cannot find a free port: %v", err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if !withBus {
			return port
		}
		if port+10000 > 65535 {
			continue
		}
		if bus, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port+10000)); err == nil {
			bus.Close()
			return port
		}
	}
	t.Fatal("cannot find a free port pair for a cluster node")
	return 0
}

// Start starts a standalone redis-server (no persistence) and stops it when the test ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	bin := need(t, "redis-server")
	s := &Server{t: t, Password: opts.Password, dir: t.TempDir()}
	s.Addr = "127.0.0.1:" + strconv.Itoa(freePort(t, false))
	s.args = append([]string{"--save", "", "--appendonly", "no"}, opts.Args...)
	if opts.Password != "" {
		s.args = append(s.args, "--requirepass", opts.Password)
	}
	s.start(bin)
	t.Cleanup(s.Stop)
	return s
}

func (s *Server) start(bin string) {
	s.t.Helper()
	host, port, _ := net.SplitHostPort(s.Addr)
	args := append([]string{"--bind", host, "--port", port, "--dir", s.dir, "--logfile", filepath.Join(s.dir, "redis.log")}, s.args...)
	s.cmd = exec.Command(bin, args...)
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("cannot start redis-server: %v", err)
	}
	s.exited = make(chan struct{})
	cmd, exited := s.cmd, s.exited
	go func() { cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(20 * time.Second)
	for !s.answers() {
		select {
		case <-exited:
			log, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
			s.t.Fatalf("redis-server on %s exited at start: %s", s.Addr, log)
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("redis-server on %s did not answer within 20 s", s.Addr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// answers reports whether the server answers a PING (NOAUTH counts: it is up).
func (s *Server) answers() bool {
	c, err := net.DialTimeout("tcp", s.Addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && (strings.HasPrefix(line, "+PONG") || strings.HasPrefix(line, "-NOAUTH"))
}

// PID is the server process's id.
func (s *Server) PID() int { return s.cmd.Process.Pid }

// URL is the redis:// URL of the server, with its password when it has one.
func (s *Server) URL() string {
	if s.Password != "" {
		return "redis://:" + s.Password + "@" + s.Addr
	}
	return "redis://" + s.Addr
}

// Stop stops the server by its PID (SIGTERM, then SIGKILL after 10 s) and waits for it; harmless twice.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
	}
	s.cmd = nil
}

// Kill stops the server at once (SIGKILL), as a crash would.
func (s *Server) Kill() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}

// Restart starts the server again on the same address (empty: nothing was persisted).
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.start(need(s.t, "redis-server"))
}

// Cluster is a three-node Redis cluster (three masters, no replicas).
type Cluster struct {
	Nodes []*Server
}

// StartCluster starts three cluster-enabled servers and joins them with redis-cli --cluster create.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	bin := need(t, "redis-server")
	cli := need(t, "redis-cli")
	c := &Cluster{}
	var addrs []string
	for range 3 {
		s := &Server{t: t, dir: t.TempDir()}
		s.Addr = "127.0.0.1:" + strconv.Itoa(freePort(t, true))
		s.args = []string{"--save", "", "--appendonly", "no", "--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(s.dir, "nodes.conf"), "--cluster-node-timeout", "2000"}
		s.start(bin)
		t.Cleanup(s.Stop)
		c.Nodes = append(c.Nodes, s)
		addrs = append(addrs, s.Addr)
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, s := range c.Nodes {
		for {
			host, port, _ := net.SplitHostPort(s.Addr)
			out, _ := exec.Command(cli, "-h", host, "-p", port, "cluster", "info").Output()
			if strings.Contains(string(out), "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("cluster not ok on %s after 30 s: %s", s.Addr, out)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return c
}

// Addrs lists the nodes' addresses.
func (c *Cluster) Addrs() []string {
	var a []string
	for _, s := range c.Nodes {
		a = append(a, s.Addr)
	}
	return a
}

// CLI runs redis-cli against s with args and returns its output.
func (s *Server) CLI(args ...string) (string, error) {
	host, port, _ := net.SplitHostPort(s.Addr)
	base := []string{"-h", host, "-p", port}
	if s.Password != "" {
		base = append(base, "--no-auth-warning", "-a", s.Password)
	}
	out, err := exec.Command(need(s.t, "redis-cli"), append(base, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("redis-cli %v: %w: %s", args, err, out)
	}
	return strings.TrimSpace(string(out)), nil
}
