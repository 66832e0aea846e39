package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/goreplica/goreplica/config"
	"github.com/goreplica/goreplica/service"
)

// serviceActions are the actions of the service verb, in the order help shows them.
var serviceActions = []string{"install", "uninstall", "start", "stop", "restart", "status", "print-unit"}

const serviceUsage = `usage: goreplica service ACTION [flags]

  install -c FILE [--name NAME] [--user USER]
              register 'goreplica run -c FILE' with the system's service manager
              (a systemd unit, a Windows service); it starts at boot, and restarts
              5s after a failure. Several instances need distinct --name.
  uninstall [--name NAME]      stop the service if it runs and remove it
  start | stop | restart [--name NAME]
  status [--name NAME]         prints running, stopped, failed, restarting after a
                               failure or not installed; exit code 0 running,
                               3 not running, 4 not installed
  print-unit -c FILE [--name NAME] [--user USER]
                               print the systemd unit install writes

NAME defaults to goreplica.`

func (c *CLI) runService(_ context.Context, args []string) error {
	stdout, stderr := c.Stdout, c.Stderr
	if len(args) == 0 || !slices.Contains(serviceActions, args[0]) {
		if len(args) > 0 && (args[0] == "help" || args[0] == "-h" || args[0] == "--help") {
			fmt.Fprintln(stdout, serviceUsage)
			return nil
		}
		fmt.Fprintln(stderr, serviceUsage)
		if len(args) == 0 {
			return UsageError{Msg: "service: an action is required"}
		}
		return UsageError{Msg: fmt.Sprintf("service: unknown action %q", args[0])}
	}
	action := args[0]
	withConfig := action == "install" || action == "print-unit"
	c.verb = &verb{name: "service " + action, synopsis: "[flags]", summary: "see 'goreplica service --help'"}
	fs := c.flags()
	name := fs.String("name", service.DefaultName, "service `NAME`")
	var cfgFlag, user *string
	if withConfig {
		var one oneConfig
		fs.Var(&one, "c", "configuration `FILE` the service runs with (default $GOREPLICA_CONFIG, then "+config.DefaultPath()+"); one per service: install one service per configuration with --name")
		cfgFlag = &one.path
		user = fs.String("user", "", "run the service as `USER` (default: root; LocalSystem on Windows)")
	}
	if err := c.parse(fs, args[1:], 0); err != nil {
		return err
	}
	if err := service.CheckName(*name); err != nil {
		return UsageError{Verb: "service", Msg: err.Error()}
	}
	if withConfig {
		sc, warnings, err := serviceConfig(*cfgFlag, *name, *user, action == "install")
		if err != nil {
			return err
		}
		if action == "print-unit" {
			unit, err := service.Unit(sc)
			if err != nil {
				return err
			}
			_, err = io.WriteString(stdout, unit)
			return err
		}
		return installService(sc, warnings, stdout)
	}
	switch action {
	case "status":
		st, err := service.Status(*name)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "service %s: %s\n", *name, st)
		switch st {
		case service.Running:
			return nil
		case service.NotInstalled:
			return ExitStatus(4)
		}
		return ExitStatus(3)
	case "uninstall":
		if err := service.Uninstall(*name); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "service %s: uninstalled\n", *name)
		return nil
	}
	do := map[string]func(string) error{"start": service.Start, "stop": service.Stop, "restart": service.Restart}[action]
	if err := do(*name); err != nil {
		return fmt.Errorf("%w%s", err, serviceHint(*name))
	}
	st, err := service.Status(*name)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "service %s: %s\n", *name, st)
	return nil
}

// serviceConfig returns what to install, with absolute paths. For install
// it checks the configuration the service will run with (a service that
// cannot read it would fail at every restart); environment variables it
// references but that are not set here are only warned about, since the
// service has an environment of its own (ServiceEnvironment).
func serviceConfig(cfgFlag, name, user string, check bool) (service.Config, []string, error) {
	path, err := filepath.Abs(config.Resolve(cfgFlag))
	if err != nil {
		return service.Config{}, nil, err
	}
	var warnings []string
	if check {
		_, err := config.Load(path)
		if names, ok := config.OnlyMissingEnv(err); ok {
			warnings = append(warnings, fmt.Sprintf("the configuration refers to %s, not set here: the service must have %s (%s), or use password_file",
				strings.Join(names, ", "), plural(len(names), "it", "them"), service.EnvironmentHint(name)))
		} else if err != nil {
			return service.Config{}, nil, err
		}
	} else if _, err := os.Stat(path); err != nil {
		return service.Config{}, nil, fmt.Errorf("configuration file: %w (pass -c FILE or set GOREPLICA_CONFIG; sample.toml documents every key)", err)
	}
	exe, err := os.Executable()
	if err != nil {
		return service.Config{}, nil, fmt.Errorf("find the goreplica binary: %w", err)
	}
	if p, err := filepath.EvalSymlinks(exe); err == nil {
		exe = p
	}
	return service.Config{Name: name, Executable: exe, ConfigPath: path, User: user,
		Password: os.Getenv("GOREPLICA_SERVICE_PASSWORD")}, warnings, nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func installService(sc service.Config, warnings []string, stdout io.Writer) error {
	more, err := service.Install(sc)
	if err != nil {
		return err
	}
	for _, w := range append(warnings, more...) {
		fmt.Fprintln(stdout, "warning: "+w)
	}
	fmt.Fprintf(stdout, "service %s installed (%s): %s\n", sc.Name, service.Platform(), sc.Command())
	fmt.Fprintf(stdout, "start it with: goreplica service start --name %s\n", sc.Name)
	return nil
}

// serviceHint says where to look when the service manager refused.
func serviceHint(name string) string {
	switch service.Platform() {
	case "linux-systemd":
		return fmt.Sprintf("\n  see: journalctl -u %s.service -n 50", name)
	case "windows-service":
		return fmt.Sprintf("\n  see the Application event log, source %s", name)
	}
	return ""
}
