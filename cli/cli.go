package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/goreplica/goreplica/config"
)

// CLI runs goreplica's verbs. The zero value is not usable: main fills in
// the embedded SQL, the version and the output streams.
type CLI struct {
	TriggerSQL string // every SQL object goreplica installs (trigger.sql)
	Version    string // the release version, for the logs and the start mail
	// VersionLine is what 'goreplica version' prints; empty: "goreplica"
	// and Version.
	VersionLine string
	Stdout      io.Writer
	Stderr      io.Writer

	verb *verb // the verb being run, for its usage text
}

// verb is one line of the verb table.
type verb struct {
	name     string
	synopsis string // what follows the verb in its usage line
	summary  string
	config   bool // takes -c FILE
	run      func(c *CLI, ctx context.Context, args []string) error
}

// verbs is every verb, in the order help lists them. help and VERB --help
// are built from it.
var verbs = []verb{
	{"init", "[-c FILE]", "check servers and tables, install capture on the master and the slaves", true, (*CLI).runInit},
	{"run", "[-c FILE]...", "run the replication daemon in the foreground (several -c: one daemon for every configuration, e.g. both directions of two sites that write)", true, (*CLI).runRun},
	{"status", "[-c FILE] [--json]", "show each slave's state, lag, pending events and errors", true, (*CLI).runStatus},
	{"add", "[-c FILE] [--copy MODE] TABLE...", "start replicating tables (daemon running or not): create them on the slaves, copy them online", true, (*CLI).runAdd},
	{"remove", "[-c FILE] TABLE...", "stop replicating tables: drop their triggers and pending changes on the master, keep the slaves' rows", true, (*CLI).runRemove},
	{"wait", "[-c FILE] [--timeout 30m]", "wait until every table on every slave is copied and ok: exit 0, or 1 on a table in error or the timeout", true, (*CLI).runWait},
	{"check", "[-c FILE] [--warning 30s] [--critical 5m]", "Nagios/Icinga plugin: one line with perfdata, exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN", true, (*CLI).runCheck},
	{"conflicts", "[-c FILE] [--slave NAME] [--json]", "list the conflicts recorded on the slaves (replica.conflicts) and what was done about each", true, (*CLI).runConflicts},
	{"skip", "[-c FILE] --slave NAME [--txid X]", "skip the one source transaction a slave stopped on (a conflict), record it, and let replication resume", true, (*CLI).runSkip},
	{"compare", "[-c FILE] [TABLE...] [--slave NAME] [--json]", "compare tables on master and slaves by row checksums while writes go on: exit 0 equal, 1 differ, 3 could not compare", true, (*CLI).runCompare},
	{"repair", "[-c FILE] --slave NAME TABLE [--apply] [--json]", "print (or --apply) the statements that make a slave's table equal to the master's", true, (*CLI).runRepair},
	{"unregister", "[-c FILE] SLAVE", "remove a slave the configuration no longer names from the master's registry (it holds back purge)", true, (*CLI).runUnregister},
	{"uninstall", "[-c FILE] --yes", "remove every trigger and the replica schema from master and slaves", true, (*CLI).runUninstall},
	{"service", "ACTION [flags]", "install|uninstall|start|stop|restart|status|print-unit: goreplica as a system service", true, (*CLI).runService},
	{"mail-test", "[-c FILE]", "send a test alert mail and report the SMTP outcome in one line", true, (*CLI).runMailTest},
	{"trigger", "", "print the SQL goreplica installs (schema replica)", false, (*CLI).runTrigger},
	{"demo", "[--duration D] [--clients N]", "start a throwaway master and two slaves, replicate a live workload, verify, clean up", false, (*CLI).runDemo},
	{"version", "", "print the version", false, (*CLI).runVersion},
}

// lookup returns the verb called name, or nil.
func lookup(name string) *verb {
	for i := range verbs {
		if verbs[i].name == name {
			return &verbs[i]
		}
	}
	return nil
}

// UsageError is a bad command line. main prints it with Hint and exits 2.
type UsageError struct {
	Verb string // the verb whose usage was wrong; empty for the verb itself
	Msg  string
}

func (e UsageError) Error() string { return e.Msg }

// Hint says where to read the usage.
func (e UsageError) Hint() string {
	if e.Verb != "" {
		return fmt.Sprintf("run 'goreplica %s --help' for its usage", e.Verb)
	}
	return "run 'goreplica help' for the list of verbs"
}

// ExitStatus is returned by a verb whose outcome is its exit code (status,
// check, service status): it has printed everything already, and main only
// exits with it.
type ExitStatus int

func (e ExitStatus) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// errHelpShown is returned after VERB --help printed the usage: exit 0.
var errHelpShown = errors.New("help shown")

// Run runs the verb args name. Before the verb it accepts -c FILE (given
// to the verb), --version, -h and --help.
func (c *CLI) Run(ctx context.Context, args []string) error {
	var cfgs []string
	for len(args) > 0 {
		a := args[0]
		switch {
		case a == "-c" || a == "--c":
			if len(args) < 2 {
				return UsageError{Msg: "flag needs an argument: -c"}
			}
			cfgs, args = append(cfgs, "-c", args[1]), args[2:]
			continue
		case strings.HasPrefix(a, "-c=") || strings.HasPrefix(a, "--c="):
			cfgs, args = append(cfgs, "-c", a[strings.Index(a, "=")+1:]), args[1:]
			continue
		case a == "--version" || a == "-version":
			return c.runVersion(ctx, nil)
		case a == "-h" || a == "--help" || a == "-help":
			args = nil
		case strings.HasPrefix(a, "-"):
			return UsageError{Msg: fmt.Sprintf("unknown flag %q before the verb (only -c FILE, --version and --help go there)", a)}
		}
		break
	}
	if len(args) == 0 {
		c.printHelp(c.Stdout)
		return nil
	}
	name, rest := args[0], args[1:]
	if name == "help" {
		if len(rest) == 0 {
			c.printHelp(c.Stdout)
			return nil
		}
		name, rest = rest[0], []string{"--help"}
	}
	v := lookup(name)
	if v == nil {
		msg := fmt.Sprintf("unknown verb %q", name)
		if s := suggest(name); s != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", s)
		}
		return UsageError{Msg: msg}
	}
	if len(cfgs) > 0 {
		if !v.config {
			return UsageError{Verb: v.name, Msg: fmt.Sprintf("%s takes no configuration file (-c)", v.name)}
		}
		at := 0
		if v.name == "service" && len(rest) > 0 {
			at = 1 // after the action
		}
		rest = append(append(append([]string{}, rest[:at]...), cfgs...), rest[at:]...)
	}
	c.verb = v
	err := v.run(c, ctx, rest)
	if errors.Is(err, errHelpShown) {
		return nil
	}
	return err
}

func (c *CLI) printHelp(w io.Writer) {
	fmt.Fprintln(w, "goreplica: trigger-based, NOTIFY-driven replication for PostgreSQL")
	fmt.Fprintln(w, "\nusage: goreplica [-c FILE] <verb> [flags] [args]")
	fmt.Fprintln(w, "\nverbs:")
	for _, v := range verbs {
		fmt.Fprintf(w, "  %-11s %s\n", v.name, v.summary)
	}
	fmt.Fprintln(w, "\n'goreplica help VERB' or 'goreplica VERB --help' shows a verb's flags.")
	fmt.Fprintln(w, "Without -c the configuration is $GOREPLICA_CONFIG, then "+config.DefaultPath()+".")
}

// flags returns an empty flag set for the verb being run, whose usage
// comes from the verb table.
func (c *CLI) flags() *flag.FlagSet {
	name, synopsis, summary := "", "", ""
	if c.verb != nil {
		name, synopsis, summary = c.verb.name, c.verb.synopsis, c.verb.summary
	}
	fs := flag.NewFlagSet("goreplica "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "usage: goreplica %s %s\n\n%s\n", name, synopsis, summary)
		n := 0
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n > 0 {
			fmt.Fprintln(w, "\nflags:")
			fs.PrintDefaults()
		}
	}
	return fs
}

// configFlag adds the -c flag most verbs share: one configuration file.
// Only run takes several (configsFlag); a second -c is an error, never a
// silent choice of one of them.
func configFlag(fs *flag.FlagSet) *string {
	var p oneConfig
	fs.Var(&p, "c", "configuration `FILE` (default $GOREPLICA_CONFIG, then "+config.DefaultPath()+"); one only")
	return &p.path
}

// oneConfig is the value of a -c flag that may be given once.
type oneConfig struct {
	path string
	set  bool
}

func (o *oneConfig) String() string { return o.path }

func (o *oneConfig) Set(v string) error {
	if o.set {
		return fmt.Errorf("-c given more than once: this verb reads one configuration, run it once per file (only 'run' takes several)")
	}
	o.path, o.set = v, true
	return nil
}

// parse parses a verb's flags. -h and --help print the usage on stdout and
// return errHelpShown; a bad flag is a UsageError naming the verb. With
// maxArgs >= 0, more positional arguments than that are a UsageError.
func (c *CLI) parse(fs *flag.FlagSet, args []string, maxArgs int) error {
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(c.Stdout)
		fs.Usage()
		return errHelpShown
	}
	name := strings.TrimPrefix(fs.Name(), "goreplica ")
	if err != nil {
		return UsageError{Verb: name, Msg: name + ": " + err.Error()}
	}
	if maxArgs >= 0 && fs.NArg() > maxArgs {
		return UsageError{Verb: name, Msg: fmt.Sprintf("%s: unexpected argument %q", name, fs.Arg(maxArgs))}
	}
	return nil
}

// suggest returns the verb closest to a mistyped name, or "".
func suggest(name string) string {
	best, bestD := "", 3
	for _, v := range verbs {
		d := distance(name, v.name)
		if strings.HasPrefix(v.name, name) && len(name) >= 2 {
			d = min(d, 1)
		}
		if d < bestD {
			best, bestD = v.name, d
		}
	}
	if bestD > 2 || bestD*3 > len(name) {
		return ""
	}
	return best
}

// distance is the Levenshtein distance between a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
