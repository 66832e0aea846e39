package service

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	kservice "github.com/kardianos/service"
)

// DefaultName is the service name when none is given.
const DefaultName = "goreplica"

// StopTimeout bounds how long the daemon may take to stop when its service
// manager asks: the batch in flight commits (at most 10s), the last mails
// go out (at most 5s). The unit and the Windows stop wait hint give it this.
const StopTimeout = 30 * time.Second

// Config says what to install.
type Config struct {
	Name       string // service name; several instances need distinct names
	Executable string // absolute path of the goreplica binary
	ConfigPath string // absolute path of the configuration file
	User       string // account the service runs as; "" for the system default (root, LocalSystem)
	Password   string // the account's password (Windows only; never printed)
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$`)

// CheckName reports whether name can name a service on every platform.
func CheckName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("service name %q: use 1-80 letters, digits, '_', '.' or '-', starting with a letter or digit", name)
	}
	return nil
}

func (c Config) check() error {
	var errs []error
	if err := CheckName(c.Name); err != nil {
		errs = append(errs, err)
	}
	for what, p := range map[string]string{"executable": c.Executable, "configuration file": c.ConfigPath} {
		if !filepath.IsAbs(p) {
			errs = append(errs, fmt.Errorf("%s %q: the service needs an absolute path", what, p))
		}
		if strings.Contains(p, "{{") {
			errs = append(errs, fmt.Errorf("%s %q: a path holding {{ cannot be installed", what, p))
		}
	}
	return errors.Join(errs...)
}

// Arguments are the arguments the service manager starts the binary with.
func (c Config) Arguments() []string {
	return []string{"run", "-c", c.ConfigPath, "--service", c.Name}
}

// Command is the command line the service runs, for messages.
func (c Config) Command() string {
	return strings.Join(append([]string{c.Executable}, c.Arguments()...), " ")
}

// State is what the service manager says of a service.
type State int

// The states Status reports.
const (
	NotInstalled State = iota
	Stopped
	Running
	Failed     // stopped after a failure (systemd's "failed")
	Restarting // waiting to be started again after a failure (systemd's "auto-restart")
)

func (s State) String() string {
	return [...]string{"not installed", "stopped", "running", "failed", "restarting after a failure"}[s]
}

// program is the kardianos Interface of a service that is only installed
// and controlled here: Run (see run_*.go) does not go through kardianos.
type program struct{}

func (program) Start(kservice.Service) error { return nil }
func (program) Stop(kservice.Service) error  { return nil }

// kardianos returns the kardianos service for c. Only Name is needed to
// control an installed service.
func kardianos(c Config) (kservice.Service, error) {
	kc := &kservice.Config{
		Name:        c.Name,
		DisplayName: "goreplica (" + c.Name + ")",
		Description: "goreplica: trigger-based PostgreSQL replication daemon, configuration " + c.ConfigPath,
		Executable:  c.Executable,
		Arguments:   c.Arguments(),
		UserName:    c.User,
		Option:      platformOptions(c),
	}
	s, err := kservice.New(program{}, kc)
	if err != nil {
		return nil, fmt.Errorf("service %s: %w", c.Name, err)
	}
	return s, nil
}

// Platform names the service manager found ("linux-systemd", "windows-service", ...).
func Platform() string { return kservice.Platform() }

// Install registers the service; it does not start it. Warnings say what
// of the registration the service manager did not take.
func Install(c Config) (warnings []string, err error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	if st, err := Status(c.Name); err == nil && st != NotInstalled {
		return nil, fmt.Errorf("service %s is already installed (%s): 'goreplica service uninstall --name %s' first, or choose another --name", c.Name, st, c.Name)
	}
	s, err := kardianos(c)
	if err != nil {
		return nil, err
	}
	if err := s.Install(); err != nil {
		cleanupFailedInstall(c)
		hint := ""
		if errors.Is(err, fs.ErrPermission) || strings.Contains(strings.ToLower(err.Error()), "access is denied") {
			hint = " (installing a service needs root, or an Administrator prompt on Windows)"
		}
		return nil, fmt.Errorf("install service %s (%s): %w%s", c.Name, Platform(), err, hint)
	}
	return afterInstall(c), nil
}

// Uninstall stops the service if it runs and removes it.
func Uninstall(name string) error {
	st, err := Status(name)
	if err != nil {
		return err
	}
	if st == NotInstalled {
		return fmt.Errorf("service %s is not installed", name)
	}
	if st == Running || st == Restarting {
		if err := Stop(name); err != nil {
			return err
		}
	}
	s, err := kardianos(Config{Name: name})
	if err != nil {
		return err
	}
	if err := s.Uninstall(); err != nil {
		return fmt.Errorf("uninstall service %s: %w", name, err)
	}
	return nil
}

// Start asks the service manager to start the service.
func Start(name string) error { return control(name, "start") }

// Stop asks the service manager to stop the service and waits, up to
// StopTimeout and a margin, for it to have stopped.
func Stop(name string) error { return control(name, "stop") }

// Restart stops and starts the service.
func Restart(name string) error { return control(name, "restart") }

func control(name, action string) error {
	st, err := Status(name)
	if err != nil {
		return err
	}
	if st == NotInstalled {
		return fmt.Errorf("service %s is not installed ('goreplica service install -c FILE --name %s')", name, name)
	}
	s, err := kardianos(Config{Name: name})
	if err != nil {
		return err
	}
	// kardianos waits for a Windows service to stop without a deadline.
	done := make(chan error, 1)
	do := map[string]func() error{"start": s.Start, "stop": s.Stop, "restart": s.Restart}[action]
	go func() { done <- do() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("%s service %s: %w", action, name, err)
		}
		if action == "stop" {
			return nil
		}
		return waitStarted(name)
	case <-time.After(StopTimeout + 30*time.Second):
		return fmt.Errorf("%s service %s: no answer from the service manager after %s", action, name, StopTimeout+30*time.Second)
	}
}

// Status returns the service's state.
func Status(name string) (State, error) {
	if err := CheckName(name); err != nil {
		return NotInstalled, err
	}
	if st, ok, err := platformStatus(name); ok {
		return st, err
	}
	s, err := kardianos(Config{Name: name})
	if err != nil {
		return NotInstalled, err
	}
	st, err := s.Status()
	switch {
	case errors.Is(err, kservice.ErrNotInstalled):
		return NotInstalled, nil
	case err != nil && strings.Contains(err.Error(), "failed state"):
		return Failed, nil
	case err != nil:
		if st, ok := statusAfterError(name); ok {
			return st, nil
		}
		return NotInstalled, fmt.Errorf("status of service %s: %w", name, err)
	case st == kservice.StatusRunning:
		return Running, nil
	case st == kservice.StatusStopped:
		return Stopped, nil
	}
	return NotInstalled, fmt.Errorf("status of service %s: the service manager (%s) gave no state", name, Platform())
}
