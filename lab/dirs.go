package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"strconv"
)

// DefaultName is the lab's name when neither --name nor PODNET_LAB says otherwise.
const DefaultName = "podnet"

// NameFromEnv returns $PODNET_LAB, or DefaultName.
func NameFromEnv() string {
	if n := os.Getenv("PODNET_LAB"); n != "" {
		return n
	}
	return DefaultName
}

// BaseDir is the directory that holds the state directories of the current user's labs:
// /run/podnet as root, $XDG_RUNTIME_DIR/podnet otherwise, /tmp/podnet-<uid> without it.
func BaseDir() string {
	if os.Geteuid() == 0 {
		return "/run/podnet"
	}
	if x := os.Getenv("XDG_RUNTIME_DIR"); x != "" {
		return filepath.Join(x, "podnet")
	}
	return filepath.Join(os.TempDir(), "podnet-"+strconv.Itoa(os.Geteuid()))
}

// StateDir is the state directory of the lab name.
func StateDir(name string) string { return filepath.Join(BaseDir(), name) }

// identity is lab.json: what stays the same for the life of a lab.
type identity struct {
	Name string `json:"name"`
	// Number is the lab's number in its nodes' loopback addresses, 127.0.<Number>.<n>.
	Number int `json:"number"`
}

func readIdentity(dir string) (identity, error) {
	var id identity
	b, err := os.ReadFile(filepath.Join(dir, "lab.json"))
	if err != nil {
		return id, fmt.Errorf("read lab identity: %w", err)
	}
	if err := json.Unmarshal(b, &id); err != nil {
		return id, fmt.Errorf("read lab identity %s: %w", filepath.Join(dir, "lab.json"), err)
	}
	return id, nil
}

// chooseNumber picks the lab number for a new lab: the one its name hashes to, or the next one
// not used by another lab of this user.
func chooseNumber(name string) int {
	used := map[int]bool{}
	entries, _ := os.ReadDir(BaseDir())
	for _, e := range entries {
		if id, err := readIdentity(filepath.Join(BaseDir(), e.Name())); err == nil && id.Name != name {
			used[id.Number] = true
		}
	}
	h := fnv.New32a()
	fmt.Fprintf(h, "%d/%s", os.Geteuid(), name) // two users' labs of one name get different numbers
	start := int(h.Sum32()%250) + 1
	for i := 0; i < 250; i++ {
		n := (start+i-1)%250 + 1
		if !used[n] {
			return n
		}
	}
	return start
}

func writeIdentity(dir string, id identity) error {
	b, _ := json.Marshal(id)
	return os.WriteFile(filepath.Join(dir, "lab.json"), b, 0o600)
}

var errNotRunning = errors.New("not running")
