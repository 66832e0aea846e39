package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/goreplica/goreplica/dsn"
)

// Config is the whole configuration file.
type Config struct {
	Master    Master    `toml:"master"`
	Slaves    []Slave   `toml:"slave"`
	Replicate Replicate `toml:"replicate"`
	// Mail is the optional [mail] section; nil means no alert e-mail.
	Mail *Mail `toml:"mail"`
	Log  Log   `toml:"log"`
	// Metrics is the optional [metrics] section; nil means no listener.
	Metrics *Metrics `toml:"metrics"`

	// Path is the absolute path the configuration was read from.
	Path string `toml:"-"`
}

// Master is the [master] section: the database whose changes are captured.
type Master struct {
	Name         string `toml:"name"`
	DSN          Secret `toml:"dsn"`
	PasswordFile string `toml:"password_file"`
}

// Slave is one [[slave]] section: a database the changes are applied to.
type Slave struct {
	Name         string `toml:"name"`
	DSN          Secret `toml:"dsn"`
	PasswordFile string `toml:"password_file"`
	// TwoPhase applies each batch with PREPARE TRANSACTION / COMMIT PREPARED.
	TwoPhase *bool `toml:"two_phase"`
	// Forward sends the slave the changes the master received from other
	// nodes too (default), not only the master's own: see Forwards.
	Forward *bool `toml:"forward"`
}

// Forwards reports whether the master passes on to the slave the changes it
// received from other nodes (the default: chains and stars); false for a
// full mesh, where every node feeds every other itself.
func (s Slave) Forwards() bool { return s.Forward == nil || *s.Forward }

// UsesTwoPhase reports whether the slave applies with two-phase commit (the default).
func (s Slave) UsesTwoPhase() bool { return s.TwoPhase == nil || *s.TwoPhase }

// Replicate is the [replicate] section: what is captured and how often the daemon polls.
type Replicate struct {
	Tables       []string `toml:"tables"`
	Exclude      []string `toml:"exclude"`
	PollInterval Duration `toml:"poll_interval"`
	// BatchInterval is the least time between the starts of two batches
	// while there is work; 0 applies each batch as soon as the last one
	// is done.
	BatchInterval Duration `toml:"batch_interval"`
	// PurgeInterval is how often log rows every slave has passed are deleted.
	PurgeInterval Duration `toml:"purge_interval"`
	// MaxBackoff caps the exponential back-off after an outage or an apply error.
	MaxBackoff Duration `toml:"max_backoff"`
	// BatchEvents and BatchBytes bound one slave transaction: a larger
	// backlog is applied in several, each of whole source transactions.
	BatchEvents int64 `toml:"batch_events"`
	BatchBytes  Size  `toml:"batch_bytes"`
	// OnConflict is what a conflict does by default: stop, skip or resync;
	// OnConflictTables overrides it per table (schema.table patterns).
	OnConflict       string            `toml:"on_conflict"`
	OnConflictTables map[string]string `toml:"on_conflict_tables"`
	// Sequences are schema.sequence patterns whose values follow the batches.
	Sequences []string `toml:"sequences"`
	// Copy is how a table new to a slave gets its rows: "truncate"
	// (empty the slave's table, copy), "merge" (upsert by key, keep the
	// slave's other rows) or "skip" (the slave already holds them).
	Copy string `toml:"copy"`
	// Create creates on a slave a chosen table it lacks, from the
	// master's catalog.
	Create bool `toml:"create"`
	// CaptureNew has the daemon capture and copy the tables created
	// after init that Tables matches.
	CaptureNew bool `toml:"capture_new"`
}

// Duration is a time.Duration written as a string in TOML ("5s", "250ms").
// A value that is not such a string is kept as a problem for Validate to
// report with its path, so that one bad duration does not hide the other
// problems of the file.
type Duration struct {
	time.Duration
	invalid string
}

// UnmarshalTOML implements toml.Unmarshaler.
func (d *Duration) UnmarshalTOML(v any) error {
	s, ok := v.(string)
	if !ok {
		d.invalid = fmt.Sprintf("%v is not a duration: write it as a string such as \"5s\" (a bare number would be nanoseconds)", v)
		return nil
	}
	p, err := time.ParseDuration(s)
	if err != nil {
		d.invalid = fmt.Sprintf("%q is not a duration (examples: \"250ms\", \"5s\", \"10m\")", s)
		return nil
	}
	d.Duration, d.invalid = p, ""
	return nil
}

// Problem returns why the value is not a duration, or "".
func (d Duration) Problem() string { return d.invalid }

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Secret is a string that is never printed: its String and MarshalText mask
// any password it holds. Use Reveal to get the value.
type Secret string

// Reveal returns the secret value.
func (s Secret) Reveal() string { return string(s) }

// String returns the value with passwords masked: a DSN shows everything
// but its password, any other secret (a bare password) shows as "xxxxx".
func (s Secret) String() string {
	v := string(s)
	switch {
	case v == "":
		return ""
	case !strings.Contains(v, "=") && !strings.Contains(v, "://"):
		return "xxxxx"
	}
	return MaskDSN(v)
}

// MarshalText implements encoding.TextMarshaler with the masked value.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// MaskDSN returns dsn with any password replaced by "xxxxx", in both the
// key=value and the URL forms, even when dsn is malformed.
func MaskDSN(s string) string { return dsn.MaskPassword(s) }

// DefaultPath returns the platform's default configuration file path.
func DefaultPath() string {
	if runtime.GOOS == "windows" {
		pd := os.Getenv("ProgramData")
		if pd == "" {
			pd = `C:\ProgramData`
		}
		return filepath.Join(pd, "goreplica", "goreplica.toml")
	}
	return "/etc/goreplica/goreplica.toml"
}

// Resolve picks the configuration path: the flag, then $GOREPLICA_CONFIG,
// then the platform default.
func Resolve(flag string) string {
	if flag != "" {
		return flag
	}
	if env := os.Getenv("GOREPLICA_CONFIG"); env != "" {
		return env
	}
	return DefaultPath()
}

// Defaults returns a configuration holding every default value.
func Defaults() Config {
	return Config{
		Replicate: Replicate{
			Tables:        []string{"public.*"},
			PollInterval:  Duration{Duration: time.Second},
			BatchInterval: Duration{Duration: 8 * time.Millisecond},
			PurgeInterval: Duration{Duration: time.Minute},
			MaxBackoff:    Duration{Duration: 30 * time.Second},
			BatchEvents:   10000,
			BatchBytes:    Size{Bytes: 32 << 20},
			OnConflict:    "stop",
			Copy:          "truncate",
			Create:        true,
			CaptureNew:    true,
		},
		Log: DefaultLog(),
	}
}

// Load reads, decodes and validates the file at path.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("read config %s: %w (pass -c FILE or set GOREPLICA_CONFIG; sample.toml documents every key)", path, err)
		}
		return nil, fmt.Errorf("read config %s: %w", path, err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	cfg, err := parse(string(b), filepath.Dir(abs))
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	cfg.Path = abs
	return cfg, nil
}

// Parse decodes and validates a configuration held in a string; relative
// file paths in it are taken from the current directory.
func Parse(text string) (*Config, error) { return parse(text, "") }

// parse is Parse with relative file paths (password_file, log.file) taken
// from dir, the configuration file's directory: a service runs with a
// working directory of its manager's choosing.
func parse(text, dir string) (*Config, error) {
	cfg := Defaults()
	cfg.Mail = DefaultMail()
	md, err := toml.Decode(text, &cfg)
	if err != nil {
		return nil, err
	}
	if !md.IsDefined("mail") {
		cfg.Mail = nil
	}
	var errs []error
	for _, k := range md.Undecoded() {
		errs = append(errs, fmt.Errorf("%s: unknown key", k.String()))
	}
	cfg.resolvePaths(dir)
	errs = append(errs, cfg.expand()...)
	errs = append(errs, cfg.Validate()...)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &cfg, nil
}

// resolvePaths makes the relative file paths of the configuration relative
// to dir.
func (c *Config) resolvePaths(dir string) {
	if dir == "" {
		return
	}
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	abs(&c.Master.PasswordFile)
	for i := range c.Slaves {
		abs(&c.Slaves[i].PasswordFile)
	}
	if c.Mail != nil {
		abs(&c.Mail.PasswordFile)
	}
	abs(&c.Log.File)
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// expandEnv replaces ${NAME} with the environment variable's value; an unset
// variable is an error.
func expandEnv(path, s string) (string, error) {
	var missing []string
	out := envRef.ReplaceAllStringFunc(s, func(m string) string {
		name := envRef.FindStringSubmatch(m)[1]
		v, ok := os.LookupEnv(name)
		if !ok {
			missing = append(missing, name)
		}
		return v
	})
	if len(missing) > 0 {
		return "", &EnvError{Path: path, Names: missing}
	}
	return out, nil
}

// EnvError is a ${NAME} reference to an environment variable that is not set.
type EnvError struct {
	Path  string // TOML path of the key
	Names []string
}

func (e *EnvError) Error() string {
	return fmt.Sprintf("%s: environment variable %s is not set", e.Path, strings.Join(e.Names, ", "))
}

// OnlyMissingEnv reports whether every problem err holds is an *EnvError,
// and returns the variables they name: a configuration that is complete
// but for environment variables another process (a service) will have.
func OnlyMissingEnv(err error) ([]string, bool) {
	var names []string
	var walk func(error) bool
	walk = func(err error) bool {
		switch e := err.(type) {
		case *EnvError:
			names = append(names, e.Names...)
			return true
		case interface{ Unwrap() []error }:
			for _, x := range e.Unwrap() {
				if !walk(x) {
					return false
				}
			}
			return true
		case interface{ Unwrap() error }:
			return walk(e.Unwrap())
		}
		return false
	}
	if err == nil || !walk(err) {
		return nil, false
	}
	return names, true
}

// withPasswordFile appends the password read from file to a key=value DSN,
// or sets it in a URL DSN.
func withPasswordFile(path string, dsn Secret, file string) (Secret, error) {
	if file == "" {
		return dsn, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return dsn, fmt.Errorf("%s: %w", path, err)
	}
	pw := strings.TrimRight(string(b), "\r\n")
	d := string(dsn)
	if strings.HasPrefix(d, "postgres://") || strings.HasPrefix(d, "postgresql://") {
		sep := "?"
		if strings.Contains(d, "?") {
			sep = "&"
		}
		return Secret(d + sep + "password=" + urlQueryEscape(pw)), nil
	}
	return Secret(d + " password=" + quoteDSNValue(pw)), nil
}

func quoteDSNValue(v string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

func urlQueryEscape(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		if ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9') || strings.IndexByte("-._~", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

func (c *Config) expand() []error {
	var errs []error
	// exp expands a node's DSN and checks that lib/pq can read it. The
	// error names the node and never holds the password (see package dsn).
	exp := func(path, node string, d *Secret, file string) {
		v, err := expandEnv(path+".dsn", string(*d))
		if err != nil {
			errs = append(errs, err)
			return
		}
		s, err := withPasswordFile(path+".password_file", Secret(v), file)
		if err != nil {
			errs = append(errs, err)
			return
		}
		*d = s
		if s == "" {
			return
		}
		if err := dsn.Check(string(s)); err != nil {
			errs = append(errs, fmt.Errorf("%s.dsn (%s): %w", path, node, err))
		}
	}
	exp("master", "master "+c.Master.Name, &c.Master.DSN, c.Master.PasswordFile)
	for i, sl := range c.Slaves {
		exp(slavePath(i, sl.Name), "slave "+sl.Name, &c.Slaves[i].DSN, sl.PasswordFile)
	}
	if c.Mail != nil {
		errs = append(errs, c.Mail.expand()...)
	}
	return errs
}

// nodeName is what a node name may hold: it becomes part of two-phase
// commit GIDs and of log rows, so it is kept short and plain.
var nodeName = regexp.MustCompile(`^[a-z0-9_][a-z0-9_-]{0,62}$`)

// Validate returns every problem in the configuration, each prefixed with
// its TOML path.
func (c *Config) Validate() []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	checkName := func(path, name string) {
		switch {
		case name == "":
			add("%s.name: required", path)
		case !nodeName.MatchString(name):
			add("%s.name: %q must be 1-63 lowercase letters, digits, '_' or '-'", path, name)
		}
	}
	checkName("master", c.Master.Name)
	if c.Master.DSN == "" {
		add("master.dsn: required")
	}
	if len(c.Slaves) == 0 {
		add("slave: at least one [[slave]] section is required")
	}
	seen := map[string]int{c.Master.Name: -1}
	for i, s := range c.Slaves {
		p := slavePath(i, s.Name)
		j, dup := seen[s.Name]
		if dup {
			p = fmt.Sprintf("slave[%d]", i) // the name is not enough to find it
		}
		checkName(p, s.Name)
		if dup && s.Name != "" {
			if j < 0 {
				add("%s.name: %q is also the master's name", p, s.Name)
			} else {
				add("%s.name: %q is also the name of slave[%d]", p, s.Name, j)
			}
		}
		seen[s.Name] = i
		if s.DSN == "" {
			add("%s.dsn: required", p)
		}
	}
	if len(c.Replicate.Tables) == 0 {
		add("replicate.tables: at least one pattern is required")
	}
	for i, p := range append(append([]string{}, c.Replicate.Tables...), c.Replicate.Exclude...) {
		key := "replicate.tables"
		idx := i
		if i >= len(c.Replicate.Tables) {
			key, idx = "replicate.exclude", i-len(c.Replicate.Tables)
		}
		if _, _, ok := strings.Cut(p, "."); !ok {
			add("%s[%d]: %q must be schema.table (wildcard * allowed, e.g. \"public.*\")", key, idx, p)
		}
	}
	for i, p := range c.Replicate.Sequences {
		if _, _, ok := strings.Cut(p, "."); !ok {
			add("replicate.sequences[%d]: %q must be schema.sequence (wildcard * allowed, e.g. \"public.*\")", i, p)
		}
	}
	positive := func(path string, d Duration) {
		switch {
		case d.invalid != "":
			add("%s: %s", path, d.invalid)
		case d.Duration <= 0:
			add("%s: must be positive", path)
		}
	}
	positive("replicate.poll_interval", c.Replicate.PollInterval)
	switch d := c.Replicate.BatchInterval; {
	case d.invalid != "":
		add("replicate.batch_interval: %s", d.invalid)
	case d.Duration < 0:
		add("replicate.batch_interval: must not be negative")
	case d.Duration > time.Minute:
		add("replicate.batch_interval: %s is longer than a minute: every change would wait that long", d)
	}
	positive("replicate.purge_interval", c.Replicate.PurgeInterval)
	positive("replicate.max_backoff", c.Replicate.MaxBackoff)
	if c.Replicate.BatchEvents < 1 {
		add("replicate.batch_events: must be at least 1")
	}
	switch {
	case c.Replicate.BatchBytes.invalid != "":
		add("replicate.batch_bytes: %s", c.Replicate.BatchBytes.invalid)
	case c.Replicate.BatchBytes.Bytes < 1<<10:
		add("replicate.batch_bytes: %s is too small (at least 1KB)", c.Replicate.BatchBytes)
	}
	errs = append(errs, c.Replicate.validateConflicts()...)
	switch c.Replicate.Copy {
	case "truncate", "merge", "skip":
	default:
		add("replicate.copy: %q is not a copy mode (truncate, merge or skip)", c.Replicate.Copy)
	}
	if c.Metrics != nil {
		errs = append(errs, c.Metrics.validate()...)
	}
	if c.Mail != nil {
		errs = append(errs, c.Mail.validate()...)
	}
	errs = append(errs, c.Log.validate()...)
	return errs
}
