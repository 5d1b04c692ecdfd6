package upstream

import (
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"

	"llmcache/pipeline/wire"
)

// fullListener returns the address of a listener whose accept queue is full: Linux drops further SYNs, so a
// connect there hangs until its timeout. A route-less address (10.255.255.1) would do the same only on some
// networks; this works on loopback everywhere on Linux.
func fullListener(t *testing.T) string {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil { // never accepted: the queue holds one connection
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
	for range 8 {
		// A connect the kernel can complete does so at once; the second is room for a loaded machine.
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return addr // this one hung: the queue is full
		}
		t.Cleanup(func() { c.Close() })
	}
	t.Skip("this kernel accepts connections past a full backlog; cannot provoke a connect timeout")
	return ""
}

func TestConnectTimeout(t *testing.T) {
	t.Parallel()
	url := "http://" + fullListener(t)
	eachTransport(t, func(t *testing.T, newT func(Options) transport) {
		tr := newT(Options{})
		ep := endpoint(url)
		ep.ConnectTimeout = 300 * time.Millisecond
		err := within(t, 30*time.Second, func() error { return tr.Do(request(ep, "/"), &wire.Response{}) })
		wantKind(t, err, wire.ErrTimeout, "connect timeout 300ms")
		s := &sink{}
		err = within(t, 30*time.Second, func() error { return tr.Stream(request(ep, "/"), s) })
		wantKind(t, err, wire.ErrTimeout, "connect timeout 300ms")
	})
}
