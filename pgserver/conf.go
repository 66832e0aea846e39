package pgserver

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// settings are the postgresql.conf settings of the server: the defaults,
// then Options.Settings, then the ones pgserver must control.
func (s *Server) settings() map[string]string {
	m := map[string]string{
		"listen_addresses":          s.Host,
		"max_connections":           "100",
		"max_prepared_transactions": "0",
		"logging_collector":         "off",
	}
	if !s.opts.Durable {
		m["fsync"] = "off"
		m["full_page_writes"] = "off"
	}
	for k, v := range s.opts.Settings {
		m[strings.ToLower(k)] = v
	}
	m["port"] = strconv.Itoa(s.Port)
	m["unix_socket_directories"] = socketDir(s.root)
	return m
}

func (s *Server) writeConf() error {
	path := filepath.Join(s.DataDir, confFileName)
	if err := os.WriteFile(path, []byte(confText(s.settings())), 0o600); err != nil {
		return fmt.Errorf("configure postgres in %s: %w", s.DataDir, err)
	}
	if err := s.acct.own(path); err != nil {
		return fmt.Errorf("configure postgres in %s: %w", s.DataDir, err)
	}
	return nil
}

// confText renders settings as postgresql.conf lines, sorted by name.
func confText(settings map[string]string) string {
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("# Written by pgserver; rewritten at each start.\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "%s = %s\n", k, confValue(settings[k]))
	}
	return b.String()
}

// confValue quotes a postgresql.conf value: single quotes, with quotes and
// backslashes escaped.
func confValue(v string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `''`).Replace(v) + "'"
}

// reservedSettings are chosen by pgserver for every server.
var reservedSettings = map[string]bool{
	"port":                    true,
	"unix_socket_directories": true,
}

// checkSettings rejects settings that would break the server's
// configuration file or that pgserver controls.
func checkSettings(settings map[string]string) error {
	var errs []error
	for k, v := range settings {
		switch {
		case !validSettingName(k):
			errs = append(errs, fmt.Errorf("setting %q: invalid name", k))
		case reservedSettings[strings.ToLower(k)]:
			errs = append(errs, fmt.Errorf("setting %q: chosen by pgserver, cannot be set", k))
		case strings.ContainsAny(v, "\x00\r\n"):
			errs = append(errs, fmt.Errorf("setting %q: value contains a line break or NUL", k))
		}
	}
	if len(errs) > 0 {
		// Sorted so that the message does not depend on map order.
		sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
		return fmt.Errorf("start postgres: %w", errors.Join(errs...))
	}
	return nil
}

// validSettingName accepts the names postgresql.conf accepts: letters,
// digits, underscores, and dots for extension settings.
func validSettingName(name string) bool {
	if name == "" {
		return false
	}
	for i, r := range name {
		switch {
		case r == '_' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z'):
		case (r >= '0' && r <= '9') || r == '.':
			if i == 0 {
				return false
			}
		default:
			return false
		}
	}
	return true
}
