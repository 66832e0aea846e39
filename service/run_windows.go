package service

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
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
	crashOutput(name)
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

// CrashFile is where a Windows service's crash report (a Go panic or fatal
// error with every goroutine's stack) goes: a service has no standard
// error, so it would otherwise be lost.
func CrashFile(name string) string {
	pd := os.Getenv("ProgramData")
	if pd == "" {
		pd = `C:\ProgramData`
	}
	return filepath.Join(pd, "goreplica", name+".crash.log")
}

func crashOutput(name string) {
	path := CrashFile(name)
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return
	}
	_ = debug.SetCrashOutput(f, debug.CrashOptions{})
	f.Close() // SetCrashOutput keeps its own duplicate
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
