package ociimage

import (
	"debug/elf"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// libDirs are where Debian keeps shared libraries, in the dynamic loader's order.
var libDirs = []string{"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/lib", "/usr/lib"}

// Programs returns the files an image needs to run each host program in progs: the program at
// its own path, and every shared library it needs (DT_NEEDED, recursively) and its interpreter
// (PT_INTERP), each at the path the dynamic loader looks for it. A static program needs nothing
// more. It fails naming the program and library that cannot be found.
func Programs(progs ...string) (map[string]string, error) {
	files := map[string]string{}
	var add func(imagePath, hostPath string) error
	add = func(imagePath, hostPath string) error {
		if _, ok := files[imagePath]; ok {
			return nil
		}
		real, err := filepath.EvalSymlinks(hostPath)
		if err != nil {
			return err
		}
		files[imagePath] = real
		f, err := elf.Open(real)
		if err != nil {
			return nil // a script or data: nothing to resolve
		}
		defer f.Close()
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				b := make([]byte, p.Filesz)
				if _, err := p.ReadAt(b, 0); err != nil {
					return fmt.Errorf("%s: interpreter: %w", hostPath, err)
				}
				interp := strings.TrimRight(string(b), "\x00")
				if err := add(interp, interp); err != nil {
					return fmt.Errorf("%s: interpreter %s: %w", hostPath, interp, err)
				}
			}
		}
		libs, err := f.ImportedLibraries()
		if err != nil {
			return fmt.Errorf("%s: %w", hostPath, err)
		}
		for _, lib := range libs {
			found := ""
			for _, d := range libDirs {
				if _, err := os.Stat(filepath.Join(d, lib)); err == nil {
					found = filepath.Join(d, lib)
					break
				}
			}
			if found == "" {
				return fmt.Errorf("%s needs %s, which is in none of %v", hostPath, lib, libDirs)
			}
			if err := add(found, found); err != nil {
				return err
			}
		}
		return nil
	}
	for _, p := range progs {
		host := p
		if !filepath.IsAbs(p) {
			return nil, fmt.Errorf("ociimage: program %q: want an absolute path", p)
		}
		if err := add(p, host); err != nil {
			return nil, fmt.Errorf("ociimage: program %s: %w", p, err)
		}
	}
	return files, nil
}
