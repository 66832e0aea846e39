package service

import (
	"context"
	"fmt"
	"sync"

	"golang.org/x/sys/windows/svc"
	"golang.org/x/sys/windows/svc/eventlog"
)

// Run runs daemon as the Windows service name: it connects the process to
// the service control manager (which must have started it: the installed
// command line carries --service), reports the service running once daemon
// calls ready, and cancels daemon's context on a stop or shutdown request.
// An error daemon returns is written to the event log too, since a service
// has no console, and reported to the service control manager as a failure
// so that the recovery action restarts it.
//
// It calls svc.Run directly rather than kardianos's Run, which decides
// whether it runs as a service by guessing from the parent process.
func Run(ctx context.Context, name string, daemon func(ctx context.Context, ready func()) error) error {
	h := &handler{ctx: ctx, daemon: daemon}
	if err := svc.Run(name, h); err != nil {
		return fmt.Errorf("run as Windows service %s: %w (only the service control manager starts 'goreplica run --service'; run without --service in a console)", name, err)
	}
	if h.err != nil {
		if l, err := eventlog.Open(name); err == nil {
			_ = l.Error(eventID, "goreplica stopped: "+h.err.Error())
			l.Close()
		}
	}
	return h.err
}

// eventID is the event id of the entries Run writes (package logging uses
// the same).
const eventID = 1

type handler struct {
	ctx    context.Context
	daemon func(ctx context.Context, ready func()) error
	err    error
}

// Execute implements svc.Handler.
func (h *handler) Execute(_ []string, requests <-chan svc.ChangeRequest, status chan<- svc.Status) (bool, uint32) {
	const waitHint = uint32(StopTimeout / 1e6) // milliseconds
	status <- svc.Status{State: svc.StartPending, WaitHint: waitHint}
	ctx, cancel := context.WithCancel(h.ctx)
	defer cancel()
	ready := make(chan struct{})
	var once sync.Once
	done := make(chan error, 1)
	go func() { done <- h.daemon(ctx, func() { once.Do(func() { close(ready) }) }) }()
	stopping := false
	for {
		select {
		case <-ready:
			ready = nil
			if !stopping {
				status <- svc.Status{State: svc.Running, Accepts: svc.AcceptStop | svc.AcceptShutdown}
			}
		case err := <-done:
			h.err = err
			if err != nil {
				return true, 1
			}
			return false, 0
		case r := <-requests:
			switch r.Cmd {
			case svc.Interrogate:
				status <- r.CurrentStatus
			case svc.Stop, svc.Shutdown:
				if !stopping {
					stopping = true
					status <- svc.Status{State: svc.StopPending, WaitHint: waitHint}
					cancel()
				}
			}
		}
	}
}
