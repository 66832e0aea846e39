//go:build !windows

package service

import (
	"context"
	"net"
	"os"
)

// Run runs daemon as the service name under the service manager that
// started the process. daemon's context ends when the manager asks the
// service to stop (SIGTERM: main's signal handling cancels ctx); daemon
// calls ready once it runs, which under systemd sends READY=1 (the unit is
// Type=notify), and STOPPING=1 is sent when the stop begins.
func Run(ctx context.Context, name string, daemon func(ctx context.Context, ready func()) error) error {
	stopped := make(chan struct{})
	defer close(stopped)
	go func() {
		select {
		case <-ctx.Done():
			sdNotify("STOPPING=1")
		case <-stopped:
		}
	}()
	return daemon(ctx, func() { sdNotify("READY=1\nSTATUS=replicating (service " + name + ")") })
}

// sdNotify sends state to systemd's notification socket, when there is one
// (sd_notify(3)); it does nothing otherwise and never fails the caller.
func sdNotify(state string) {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return
	}
	if addr[0] == '@' {
		addr = "\x00" + addr[1:] // abstract socket
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return
	}
	defer conn.Close()
	_, _ = conn.Write([]byte(state))
}
