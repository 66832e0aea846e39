package service

import (
	"fmt"
	"time"

	kservice "github.com/kardianos/service"
	"golang.org/x/sys/windows/svc"
	"golang.org/x/sys/windows/svc/mgr"
)

// platformOptions: start with Windows, and restart 5 seconds after a
// failure (the failure count resets after a day).
func platformOptions(c Config) kservice.KeyValue {
	kv := kservice.KeyValue{
		"StartType":              "automatic",
		"OnFailure":              "restart",
		"OnFailureDelayDuration": "5s",
		"OnFailureResetPeriod":   86400,
	}
	if c.Password != "" {
		kv["Password"] = c.Password
	}
	return kv
}

// afterInstall makes the recovery action apply also when the daemon exits
// with an error (a bad configuration, a lost disk), not only when the
// process crashes.
func afterInstall(c Config) []string {
	warn := func(err error) []string {
		return []string{fmt.Sprintf("service %s is restarted after a crash, but the service manager refused to restart it after an error exit too: %v", c.Name, err)}
	}
	m, err := mgr.Connect()
	if err != nil {
		return warn(err)
	}
	defer m.Disconnect()
	s, err := m.OpenService(c.Name)
	if err != nil {
		return warn(err)
	}
	defer s.Close()
	if err := s.SetRecoveryActionsOnNonCrashFailures(true); err != nil {
		return warn(err)
	}
	return nil
}

func cleanupFailedInstall(Config) {}

// EnvironmentHint says where the service's environment variables go.
func EnvironmentHint(name string) string {
	return `as system environment variables, or in the service's registry value HKLM\SYSTEM\CurrentControlSet\Services\` + name + `\Environment`
}

func statusAfterError(string) (State, bool) { return NotInstalled, false }

func platformStatus(string) (State, bool, error) { return NotInstalled, false, nil }

// waitStarted waits for a service the SCM was asked to start to leave the
// start pending state: StartService returns as soon as the process has
// connected to the SCM, before the daemon has read its configuration. A
// service that stopped instead failed to start; its reason is in the event
// log.
func waitStarted(name string) error {
	m, err := mgr.Connect()
	if err != nil {
		return fmt.Errorf("start service %s: %w", name, err)
	}
	defer m.Disconnect()
	s, err := m.OpenService(name)
	if err != nil {
		return fmt.Errorf("start service %s: %w", name, err)
	}
	defer s.Close()
	deadline := time.Now().Add(StopTimeout)
	for {
		st, err := s.Query()
		if err != nil {
			return fmt.Errorf("start service %s: %w", name, err)
		}
		switch {
		case st.State == svc.Running:
			return nil
		case st.State == svc.Stopped:
			return fmt.Errorf("service %s stopped as it started (exit code %d)", name, st.ServiceSpecificExitCode)
		case time.Now().After(deadline):
			return fmt.Errorf("service %s still starting after %s", name, StopTimeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
