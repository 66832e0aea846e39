//go:build !linux

package wine

import "errors"

// Prefixes need Linux (Available says so); these keep the package building
// elsewhere, as for GOOS=windows go vet ./...

var errNotLinux = errors.New("wine: prefixes are made on linux only")

type process struct {
	pid  int
	args string
}

func (p process) String() string { return p.args }

func prefixProcesses(string) ([]process, error) { return nil, errNotLinux }

func processDir(int) string { return "" }

func serverDirOf(string) string { return "" }

func killPrefixProcesses(string) error { return errNotLinux }

type watchdog struct{}

func startWatchdog(string, string) (*watchdog, error) { return nil, errNotLinux }

func (*watchdog) dismiss() {}

func (*watchdog) fire() {}
