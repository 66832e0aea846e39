package config

import (
	"fmt"
	"net"
	"strconv"
)

// Metrics is the optional [metrics] section: an HTTP listener serving
// /metrics (Prometheus exposition format) and /healthz from the daemon.
type Metrics struct {
	// Listen is host:port, such as "127.0.0.1:9187".
	Listen string `toml:"listen"`
}

func (m *Metrics) validate() []error {
	_, port, err := net.SplitHostPort(m.Listen)
	switch {
	case m.Listen == "":
		return []error{fmt.Errorf("metrics.listen: required (such as \"127.0.0.1:9187\"); leave out [metrics] for no metrics")}
	case err != nil:
		return []error{fmt.Errorf("metrics.listen: %q is not host:port (such as \"127.0.0.1:9187\")", m.Listen)}
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return []error{fmt.Errorf("metrics.listen: port %q must be a number from 1 to 65535", port)}
	}
	return nil
}
