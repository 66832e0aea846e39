package pgserver

import (
	"context"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestDSNValue(t *testing.T) {
	tests := []struct{ in, want string }{
		{"app", "app"},
		{"", "''"},
		{"my db", "'my db'"},
		{`it's`, `'it\'s'`},
		{`back\slash`, `'back\\slash'`},
		{`"quoted"`, `"quoted"`},
	}
	for _, tt := range tests {
		if got := dsnValue(tt.in); got != tt.want {
			t.Errorf("dsnValue(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestURL(t *testing.T) {
	s := &Server{Host: "127.0.0.1", Port: 5433}
	tests := []struct{ in, want string }{
		{"app", "postgres://postgres@127.0.0.1:5433/app?sslmode=disable"},
		{"my db?#", "postgres://postgres@127.0.0.1:5433/my%20db%3F%23?sslmode=disable"},
	}
	for _, tt := range tests {
		if got := s.URL(tt.in); got != tt.want {
			t.Errorf("URL(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestConfText(t *testing.T) {
	got := confText(map[string]string{"b": `it's \ here`, "a": "1"})
	want := "# Written by pgserver; rewritten at each start.\na = '1'\nb = 'it''s \\\\ here'\n"
	if got != want {
		t.Errorf("confText = %q, want %q", got, want)
	}
}

func TestCheckSettings(t *testing.T) {
	tests := []struct {
		name     string
		settings map[string]string
		wantErr  []string
	}{
		{"none", nil, nil},
		{"ordinary", map[string]string{"max_prepared_transactions": "10", "auto_explain.log_min_duration": "0"}, nil},
		{"reserved", map[string]string{"Port": "5432", "unix_socket_directories": "/tmp"}, []string{`"Port"`, `"unix_socket_directories"`}},
		{"bad names", map[string]string{"a b": "1", "1x": "1", "": "1", "x=y": "1"}, []string{`"a b"`, `"1x"`, `""`, `"x=y"`}},
		{"line break", map[string]string{"work_mem": "1MB\nfsync = on"}, []string{`"work_mem"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkSettings(tt.settings)
			if (err != nil) != (len(tt.wantErr) > 0) {
				t.Fatalf("checkSettings = %v, want errors %v", err, tt.wantErr)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %s: %v", w, err)
				}
			}
		})
	}
}

func TestSortNewestFirst(t *testing.T) {
	dirs := []string{"/x/9.6/bin", "/x/15/bin", "/x/10/bin", "/x/16/bin", "/x/odd/bin"}
	sortNewestFirst(dirs)
	want := []string{"/x/16/bin", "/x/15/bin", "/x/10/bin", "/x/9.6/bin", "/x/odd/bin"}
	if !slices.Equal(dirs, want) {
		t.Errorf("order = %v, want %v", dirs, want)
	}
}

func TestLastBytes(t *testing.T) {
	if got := lastBytes("short", 10); got != "short" {
		t.Errorf("lastBytes(short) = %q", got)
	}
	if got := lastBytes("line one\nline two\nline three\n", 15); got != "...\nline three\n" {
		t.Errorf("lastBytes = %q", got)
	}
}

// TestPortTaken makes the first port Start picks busy, as another process
// grabbing it between pickPort and the postmaster's bind would: Start must
// try another port.
func TestPortTaken(t *testing.T) {
	if _, err := BinariesAvailable(Options{}); err != nil {
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyPort := busy.Addr().(*net.TCPAddr).Port

	realPick := pickPort
	t.Cleanup(func() { pickPort = realPick })
	var picked []int
	pickPort = func() (int, error) {
		p := busyPort
		if len(picked) > 0 {
			var err error
			if p, err = realPick(); err != nil {
				return 0, err
			}
		}
		picked = append(picked, p)
		return p, nil
	}

	s, err := Start(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if len(picked) != 2 || s.Port != picked[1] {
		t.Errorf("ports picked %v, server on %d; want a second port after %d", picked, s.Port, busyPort)
	}
}
