package manifest

import (
	"path"
	"strings"
)

const protocols = ProtocolTCP + ", " + ProtocolUDP

// checkContainer validates spec.container of a defaulted workload.
func checkContainer(c *collector, s *ContainerSpec) {
	const p = "spec.container"
	switch img := s.Image; {
	case img == "":
		c.add(p+".image", "required (an image reference such as docker.io/library/nginx:1.27)")
	case strings.ContainsAny(img, " \t\r\n"):
		c.add(p+".image", "%q must not contain whitespace", img)
	}
	checkEnv(c, p+".env", s.Env)
	mounted := make(map[string]bool, len(s.Mounts))
	for i, m := range s.Mounts {
		mp := index(p+".mounts", i)
		checkAbsPath(c, mp+".hostPath", m.HostPath, "/srv/data")
		if checkAbsPath(c, mp+".path", m.Path, "/data") {
			clean := path.Clean(m.Path)
			if mounted[clean] {
				c.add(mp+".path", "%q is mounted twice", m.Path)
			}
			mounted[clean] = true
		}
	}
	if s.HostNetwork && len(s.Ports) > 0 {
		c.add(p+".ports", "must be empty when hostNetwork is true (the container uses the node's ports directly)")
	}
	published := make(map[Port]bool, len(s.Ports))
	for i, port := range s.Ports {
		pp := index(p+".ports", i)
		checkPort(c, pp+".containerPort", port.ContainerPort)
		if port.HostPort != 0 && (port.HostPort < 1 || port.HostPort > 65535) {
			c.add(pp+".hostPort", "%d is not a port (1-65535; default: containerPort)", port.HostPort)
		}
		switch port.Protocol {
		case ProtocolTCP, ProtocolUDP:
		default:
			c.add(pp+".protocol", "%q is not one of %s", port.Protocol, protocols)
		}
		key := Port{HostPort: port.HostPort, Protocol: port.Protocol}
		if published[key] {
			c.add(pp+".hostPort", "%d/%s is published twice", port.HostPort, port.Protocol)
		}
		published[key] = true
	}
	seen := make(map[string]bool, len(s.Devices))
	for i, d := range s.Devices {
		dp := index(p+".devices", i)
		switch {
		case !strings.HasPrefix(d, "/dev/") || strings.ContainsAny(d, ":\x00"):
			c.add(dp, "%q is not a device path (a path under /dev such as /dev/video0)", d)
		case seen[d]:
			c.add(dp, "%q is listed twice", d)
		}
		seen[d] = true
	}
	if strings.ContainsAny(s.User, " \t\r\n\x00") {
		c.add(p+".user", "%q must not contain whitespace (a user name or id, optionally :group, such as 1000:1000)", s.User)
	}
}

// checkAbsPath reports a path that is not absolute; ok is false then.
func checkAbsPath(c *collector, field, p, example string) (ok bool) {
	switch {
	case p == "":
		c.add(field, "required (an absolute path such as %s)", example)
	case !strings.HasPrefix(p, "/") || strings.ContainsAny(p, ":\x00"):
		c.add(field, "%q is not an absolute path (such as %s, without ':')", p, example)
	default:
		return true
	}
	return false
}
