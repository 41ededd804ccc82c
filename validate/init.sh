#!/bin/busybox sh
# balloonlab validate: the guest's /init in the initramfs built at run time (issue #5).
# Mounts /proc, /sys, /dev, loads the virtio-balloon modules in dependency order (the list
# below is filled in by src/cli/validate_initramfs.ts), mounts the tmpfs the `touch` step
# writes to and hands over to the workload on /dev/ttyS1 (the host's control socket).
/bin/busybox mkdir -p /proc /sys /dev /mnt/touch /bin /sbin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for module in @MODULES@; do
  insmod "/modules/$module.ko" || echo "BLV-INIT insmod $module failed"
done
mount -t tmpfs -o size=100% tmpfs /mnt/touch
echo "BLV-INIT starting workload"
exec /workload /dev/ttyS1
