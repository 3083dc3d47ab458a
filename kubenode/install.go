package kubenode

import (
	"fmt"
	"os"
	"path/filepath"
)

// InstallCNI puts the CNI plugin at plugin into binDir as podnet-cni and the configuration list
// conf into confDir as 10-podnet.conflist, each written whole under a temporary name and renamed
// into place, so a container runtime never reads half a file. It is what the DaemonSet's
// install-cni container runs (`podnet cni-install`).
func InstallCNI(plugin, binDir, conf, confDir string) error {
	bin, err := os.ReadFile(plugin)
	if err != nil {
		return fmt.Errorf("install podnet-cni: %w", err)
	}
	list, err := os.ReadFile(conf)
	if err != nil {
		return fmt.Errorf("install the CNI configuration: %w", err)
	}
	if err := writeAtomic(filepath.Join(binDir, "podnet-cni"), bin, 0o755); err != nil {
		return fmt.Errorf("install podnet-cni: %w", err)
	}
	if err := writeAtomic(filepath.Join(confDir, "10-podnet.conflist"), list, 0o644); err != nil {
		return fmt.Errorf("install the CNI configuration: %w", err)
	}
	return nil
}

func writeAtomic(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
