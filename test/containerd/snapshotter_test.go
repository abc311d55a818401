// containerd's own snapshotter conformance suite (snapshots/testsuite) run against `strata serve
// --snapshotter-socket`: each test of the suite gets a fresh root, in which this file starts a strata daemon
// and connects containerd's proxy snapshotter client (snapshots/proxy, the one containerd's proxy_plugins use)
// to its socket. Which strata and which driver come from the environment; see README.md and run.sh.
package containerd

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/log"
	"github.com/containerd/containerd/pkg/dialer"
	"github.com/containerd/containerd/snapshots"
	"github.com/containerd/containerd/snapshots/proxy"
	"github.com/containerd/containerd/snapshots/testsuite"
	"google.golang.org/grpc"
)

// The name containerd would know the proxy plugin by; every request carries it.
const snapshotterName = "strata"

// How long a strata daemon may take to start serving, and to stop after SIGTERM.
const (
	startTimeout = 60 * time.Second
	stopTimeout  = 60 * time.Second
)

func TestStrataSnapshotter(t *testing.T) {
	bin := os.Getenv("STRATA_BIN")
	driver := os.Getenv("STRATA_DRIVER")
	if bin == "" || driver == "" {
		t.Skip("STRATA_BIN (the strata executable) and STRATA_DRIVER (overlay, thin, btrfs, vfs) are not set")
	}
	if os.Geteuid() != 0 {
		t.Skip("the suite mounts snapshots: run as root")
	}
	// extra driver options, KEY=VALUE separated by spaces, each passed as --storage-opt
	opts := strings.Fields(os.Getenv("STRATA_STORAGE_OPTS"))
	testsuite.SnapshotterSuite(t, "strata-"+driver, func(ctx context.Context, root string) (snapshots.Snapshotter, func() error, error) {
		return startStrata(ctx, bin, driver, opts, root)
	})
}

// startStrata serves a new store under root with `strata serve` and returns containerd's proxy client on its
// snapshotter socket, and the cleanup that closes the client and stops the daemon (SIGTERM, as systemd does).
// The daemon's output goes to the test's log line by line.
func startStrata(ctx context.Context, bin, driver string, opts []string, root string) (snapshots.Snapshotter, func() error, error) {
	socket := filepath.Join(root, "snapshotter.sock")
	args := []string{"--root", filepath.Join(root, "store"), "--driver", driver}
	for _, o := range opts {
		args = append(args, "--storage-opt", o)
	}
	// a plugin directory of its own: the suite runs its tests in parallel, one daemon each
	args = append(args, "serve", "--snapshotter-socket", socket, "--plugin-dir", filepath.Join(root, "plugins"), "--log-level", "debug")
	cmd := exec.Command(bin, args...)
	output, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	var logged sync.WaitGroup
	logged.Add(1)
	go func() {
		defer logged.Done()
		logLines(ctx, output)
	}()
	// closed when the daemon has exited; then waitErr is its exit status
	exited := make(chan struct{})
	var waitErr error
	go func() {
		logged.Wait() // Wait closes the pipe: read it to the end first
		waitErr = cmd.Wait()
		close(exited)
	}()
	stop := func() error {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
			if waitErr != nil {
				return fmt.Errorf("strata serve: %w", waitErr)
			}
			return nil
		case <-time.After(stopTimeout):
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("strata serve did not stop within %v of SIGTERM", stopTimeout)
		}
	}

	conn, err := dial(ctx, socket, exited)
	if err != nil {
		if serr := stop(); serr != nil {
			err = fmt.Errorf("%w (and %v)", err, serr)
		}
		return nil, nil, err
	}
	sn := proxy.NewSnapshotter(snapshotsapi.NewSnapshotsClient(conn), snapshotterName)
	return sn, func() error {
		cerr := conn.Close()
		if err := stop(); err != nil {
			return err
		}
		return cerr
	}, nil
}

// dial waits for the daemon's socket and connects to it as containerd connects to a proxy plugin
// (containerd's own unix dialer, no TLS); it gives up when the daemon exits first.
func dial(ctx context.Context, socket string, exited <-chan struct{}) (*grpc.ClientConn, error) {
	deadline := time.Now().Add(startTimeout)
	for {
		if _, err := os.Stat(socket); err == nil {
			break
		}
		select {
		case <-exited:
			return nil, fmt.Errorf("strata serve exited before serving %s", socket)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("strata serve did not create %s within %v", socket, startTimeout)
		}
	}
	dctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	return grpc.DialContext(dctx, dialer.DialAddress(socket),
		grpc.WithInsecure(),
		grpc.WithContextDialer(dialer.ContextDialer),
		grpc.WithBlock(),
	)
}

// logLines copies the daemon's output into the test's log (logtest's logger in ctx) until it closes.
func logLines(ctx context.Context, r io.Reader) {
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 64*1024), 1024*1024)
	for s.Scan() {
		log.G(ctx).WithField("from", "strata").Info(s.Text())
	}
}
