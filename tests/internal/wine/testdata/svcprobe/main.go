//go:build windows

// Command svcprobe is a tiny Windows service for the self-test of package
// wine. It checks that a Go program started by Wine's service control
// manager with an explicit --service flag can call svc.Run directly (no
// interactive-session detection, no linkname shim), and that its lib/pq
// reaches a PostgreSQL server on the host loopback.
//
//	svcprobe install -name N -hb C:\x\hb.txt [service flags]
//	svcprobe start|stop|status|uninstall -name N
//	svcprobe run --service N -hb C:\x\hb.txt [service flags]   (the ImagePath install writes)
//
// Service flags, which install copies into the ImagePath: -pghost H -pgport P
// (SELECT 1 on that server), -startdelay D (stay start pending for D),
// -stopdelay D (stay stop pending for D), -rundelay D (wait D before
// calling svc.Run; Wine gives up on a service after 10 s), -panic (panic
// after the third heartbeat, the crash output going to <hb>.crash).
//
// The verbs print one line, "<verb>: <result>", and exit 0; on error they
// print "<verb>: error: ..." to stderr and exit 1. The service appends to
// the heartbeat file: a "started ..." line, "eventlog ..." lines, a
// "heartbeat N" line every 200 ms, "select1=1 ..." (or "select1 error:
// ..."), and "stopped" when it has been stopped.
package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	_ "github.com/lib/pq"
	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/svc"
	"golang.org/x/sys/windows/svc/eventlog"
	"golang.org/x/sys/windows/svc/mgr"
)

const (
	heartbeatEvery = 200 * time.Millisecond
	pendingEvery   = 500 * time.Millisecond // progress reports while pending
	waitHint       = 3000                   // ms
	pgTimeout      = 20 * time.Second
)

// options are what the service is run with.
type options struct {
	hb                             string
	pgHost                         string
	pgPort                         int
	startDelay, stopDelay, runWait time.Duration
	panic                          bool
}

// args returns the service flags of o, for the ImagePath.
func (o options) args() []string {
	a := []string{"-hb", o.hb}
	if o.pgHost != "" {
		a = append(a, "-pghost", o.pgHost, "-pgport", strconv.Itoa(o.pgPort))
	}
	for _, d := range []struct {
		flag string
		d    time.Duration
	}{{"-startdelay", o.startDelay}, {"-stopdelay", o.stopDelay}, {"-rundelay", o.runWait}} {
		if d.d > 0 {
			a = append(a, d.flag, d.d.String())
		}
	}
	if o.panic {
		a = append(a, "-panic")
	}
	return a
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: svcprobe install|start|stop|status|uninstall|run [flags]")
		os.Exit(2)
	}
	verb := os.Args[1]
	var o options
	fs := flag.NewFlagSet(verb, flag.ExitOnError)
	name := fs.String("name", "svcprobe", "service name")
	service := fs.String("service", "", "run as the service of this name (set in the ImagePath)")
	fs.StringVar(&o.hb, "hb", "", "heartbeat file (absolute Windows path)")
	fs.StringVar(&o.pgHost, "pghost", "", "PostgreSQL host to SELECT 1 on (empty: none)")
	fs.IntVar(&o.pgPort, "pgport", 5432, "PostgreSQL port")
	fs.DurationVar(&o.startDelay, "startdelay", 0, "how long the service stays start pending")
	fs.DurationVar(&o.stopDelay, "stopdelay", 0, "how long the service stays stop pending")
	fs.DurationVar(&o.runWait, "rundelay", 0, "how long the service waits before calling svc.Run")
	fs.BoolVar(&o.panic, "panic", false, "panic after the third heartbeat, crash output to <hb>.crash")
	_ = fs.Parse(os.Args[2:])

	var res string
	var err error
	switch verb {
	case "install":
		res, err = install(*name, o)
	case "uninstall":
		res, err = uninstall(*name)
	case "start":
		res, err = withService(*name, func(s *mgr.Service) (string, error) {
			return "ok", s.Start()
		})
	case "stop":
		// Control returns at once: the caller polls status until stopped.
		res, err = withService(*name, func(s *mgr.Service) (string, error) {
			st, err := s.Control(svc.Stop)
			return "sent, state " + stateName(st.State), err
		})
	case "status":
		res, err = status(*name)
	case "run":
		if *service == "" {
			err = errors.New("--service NAME is required: this probe only runs as a service")
			break
		}
		time.Sleep(o.runWait)
		err = runService(*service, o)
		res = "ok"
	default:
		err = fmt.Errorf("unknown verb %q", verb)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: error: %v\n", verb, err)
		os.Exit(1)
	}
	fmt.Printf("%s: %s\n", verb, res)
}

func install(name string, o options) (string, error) {
	if o.hb == "" {
		return "", errors.New("-hb is required")
	}
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	m, err := mgr.Connect()
	if err != nil {
		return "", fmt.Errorf("connect to the service control manager: %w", err)
	}
	defer m.Disconnect()
	s, err := m.CreateService(name, exe, mgr.Config{
		DisplayName: "svcprobe " + name,
		Description: "wine self-test service probe",
		StartType:   mgr.StartManual,
	}, append([]string{"run", "--service", name}, o.args()...)...)
	if err != nil {
		return "", fmt.Errorf("create service: %w", err)
	}
	defer s.Close()
	if err := eventlog.InstallAsEventCreate(name, eventlog.Error|eventlog.Warning|eventlog.Info); err != nil {
		return "", fmt.Errorf("register event source: %w", err)
	}
	return "ok", nil
}

func uninstall(name string) (string, error) {
	res, err := withService(name, func(s *mgr.Service) (string, error) {
		return "ok", s.Delete()
	})
	if err != nil {
		return res, err
	}
	if err := eventlog.Remove(name); err != nil {
		return "", fmt.Errorf("remove event source: %w", err)
	}
	return res, nil
}

func status(name string) (string, error) {
	m, err := mgr.Connect()
	if err != nil {
		return "", fmt.Errorf("connect to the service control manager: %w", err)
	}
	defer m.Disconnect()
	s, err := m.OpenService(name)
	if errors.Is(err, windows.ERROR_SERVICE_DOES_NOT_EXIST) {
		return "not installed", nil
	}
	if err != nil {
		return "", fmt.Errorf("open service: %w", err)
	}
	defer s.Close()
	st, err := s.Query()
	if err != nil {
		return "", fmt.Errorf("query service: %w", err)
	}
	return fmt.Sprintf("%s pid=%d", stateName(st.State), st.ProcessId), nil
}

func withService(name string, f func(*mgr.Service) (string, error)) (string, error) {
	m, err := mgr.Connect()
	if err != nil {
		return "", fmt.Errorf("connect to the service control manager: %w", err)
	}
	defer m.Disconnect()
	s, err := m.OpenService(name)
	if err != nil {
		return "", fmt.Errorf("open service: %w", err)
	}
	defer s.Close()
	return f(s)
}

func stateName(s svc.State) string {
	switch s {
	case svc.Stopped:
		return "stopped"
	case svc.StartPending:
		return "start pending"
	case svc.StopPending:
		return "stop pending"
	case svc.Running:
		return "running"
	case svc.ContinuePending:
		return "continue pending"
	case svc.PausePending:
		return "pause pending"
	case svc.Paused:
		return "paused"
	}
	return fmt.Sprintf("state %d", s)
}

// runService is the service: svc.Run called directly because the ImagePath
// says --service, whatever svc.IsWindowsService says.
func runService(name string, o options) error {
	if o.hb == "" {
		return errors.New("-hb is required")
	}
	f, err := os.OpenFile(o.hb, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	h := &handler{name: name, o: o, out: f}
	if err := svc.Run(name, h); err != nil {
		h.printf("svc.Run error: %v", err)
		return fmt.Errorf("svc.Run: %w", err)
	}
	return nil
}

type handler struct {
	name string
	o    options
	mu   sync.Mutex
	out  *os.File
}

func (h *handler) printf(format string, args ...any) {
	h.mu.Lock()
	defer h.mu.Unlock()
	fmt.Fprintf(h.out, format+"\n", args...)
}

func (h *handler) Execute(args []string, r <-chan svc.ChangeRequest, s chan<- svc.Status) (bool, uint32) {
	s <- svc.Status{State: svc.StartPending, WaitHint: waitHint}
	isSvc, isErr := svc.IsWindowsService()
	wd, _ := os.Getwd()
	stderr, _ := windows.GetStdHandle(windows.STD_ERROR_HANDLE)
	h.printf("started pid=%d args=%q cmdline=%q IsWindowsService=%v err=%v cwd=%q stderr=%#x",
		os.Getpid(), args, os.Args[1:], isSvc, isErr, wd, stderr)
	pending(s, svc.StartPending, h.o.startDelay)
	h.eventLog()
	s <- svc.Status{State: svc.Running, Accepts: svc.AcceptStop | svc.AcceptShutdown}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	if h.o.pgHost != "" {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.selectOne(ctx)
		}()
	}

	tick := time.NewTicker(heartbeatEvery)
	defer tick.Stop()
	for n := 1; ; {
		select {
		case <-tick.C:
			h.printf("heartbeat %d %s", n, time.Now().Format(time.RFC3339Nano))
			n++
			if h.o.panic && n > 3 {
				h.crash()
			}
		case c := <-r:
			switch c.Cmd {
			case svc.Interrogate:
				s <- c.CurrentStatus
			case svc.Stop, svc.Shutdown:
				s <- svc.Status{State: svc.StopPending, WaitHint: waitHint}
				cancel()
				wg.Wait()
				pending(s, svc.StopPending, h.o.stopDelay)
				h.printf("stopped")
				return false, 0
			default:
				h.printf("unexpected control request %d", c.Cmd)
			}
		}
	}
}

// crash panics, the crash output going to <hb>.crash: a service has no
// standard error (its handle is 0), so without SetCrashOutput the panic
// would be lost.
func (h *handler) crash() {
	f, err := os.Create(h.o.hb + ".crash")
	if err == nil {
		err = debug.SetCrashOutput(f, debug.CrashOptions{})
	}
	h.printf("crash output to %s.crash: err=%v", h.o.hb, err)
	panic("svcprobe: deliberate panic")
}

// pending stays in state for d, reporting progress (a new CheckPoint)
// every 500 ms as a service that takes a while must.
func pending(s chan<- svc.Status, state svc.State, d time.Duration) {
	deadline := time.Now().Add(d)
	for cp := uint32(1); time.Now().Before(deadline); cp++ {
		time.Sleep(min(pendingEvery, time.Until(deadline)))
		s <- svc.Status{State: state, WaitHint: waitHint, CheckPoint: cp}
	}
}

func (h *handler) selectOne(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, pgTimeout)
	defer cancel()
	dsn := fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres sslmode=disable connect_timeout=10",
		h.o.pgHost, h.o.pgPort)
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		h.printf("select1 error: %v", err)
		return
	}
	defer db.Close()
	var one int
	var version string
	if err := db.QueryRowContext(ctx, "SELECT 1, version()").Scan(&one, &version); err != nil {
		h.printf("select1 error: %v", err)
		return
	}
	h.printf("select1=%d server=%q", one, version)
}

// eventLog writes one entry of each type to the Application event log
// under the service's source, so that the self-test can see where they go.
func (h *handler) eventLog() {
	l, err := eventlog.Open(h.name)
	if err != nil {
		h.printf("eventlog open error: %v", err)
		return
	}
	defer l.Close()
	msg := "svcprobe-event " + h.name
	h.printf("eventlog info err=%v", l.Info(1, msg+" info"))
	h.printf("eventlog warning err=%v", l.Warning(1, msg+" warning"))
	h.printf("eventlog error err=%v", l.Error(1, msg+" error"))
}
