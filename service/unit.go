package service

import (
	"fmt"
	"strings"
)

// Unit returns the systemd unit goreplica installs for c (what `goreplica
// service print-unit` prints). Compared with kardianos/service's own unit
// it waits for the network to be up, is Type=notify (systemctl start
// returns once the daemon has read its configuration and runs, and fails if
// it cannot), restarts on failure after 5 seconds instead of 120 and
// without a start limit (the daemon rides out outages by itself: it only
// exits on a bad configuration or a crash, and a replicator should come
// back), and gives the daemon StopTimeout to finish its batch on stop.
func Unit(c Config) (string, error) {
	if err := c.check(); err != nil {
		return "", err
	}
	if strings.ContainsAny(c.User, " \t\n\"'\\") {
		return "", fmt.Errorf("user %q: not a valid user name for systemd's User=", c.User)
	}
	var b strings.Builder
	line := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	line("# goreplica service %s, as `goreplica service print-unit` prints it. Installed by", c.Name)
	line("# `goreplica service install` (`goreplica service uninstall --name %s` removes it)", c.Name)
	line("# or by the goreplica package (removed with it).")
	line("[Unit]")
	line("Description=goreplica PostgreSQL replication (%s)", c.Name)
	line("Documentation=https://github.com/goreplica/goreplica")
	line("After=network-online.target")
	line("Wants=network-online.target")
	line("StartLimitIntervalSec=0")
	line("")
	line("[Service]")
	line("Type=notify")
	cmd := []string{execQuote(c.Executable)}
	for _, a := range c.Arguments() {
		cmd = append(cmd, execQuote(a))
	}
	line("ExecStart=%s", strings.Join(cmd, " "))
	if c.User != "" {
		line("User=%s", c.User)
	}
	line("Restart=on-failure")
	line("RestartSec=5")
	line("TimeoutStopSec=%d", int(StopTimeout.Seconds()))
	line("SyslogIdentifier=%s", c.Name)
	line("EnvironmentFile=-%s", environmentFile(c.Name))
	line("")
	line("[Install]")
	line("WantedBy=multi-user.target")
	return b.String(), nil
}

// environmentFile is the file of NAME=value lines the unit reads its
// environment from (for ${NAME} references of the configuration), if it
// exists.
func environmentFile(name string) string { return "/etc/goreplica/" + name + ".env" }

// execQuote quotes one word of an ExecStart= command line: in double
// quotes, with backslash and double quote escaped, and the characters
// systemd expands doubled: % (specifiers) and $ (environment variables).
// See systemd.service(5), "Command lines".
func execQuote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, `%`, `%%`, `$`, `$$`, "\n", `\n`).Replace(s) + `"`
}
