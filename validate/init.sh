#!/bin/busybox sh
# balloonlab validate: the guest's /init in the initramfs built at run time (issue #5).
# Mounts /proc, /sys, /dev, loads the virtio-balloon and virtio-blk modules in dependency order
# (the list below is filled in by src/cli/validate_initramfs.ts), mounts the tmpfs the `touch`
# step writes to and, when the host attached one (a scenario with `pagecache` steps), the
# read-only ext4 disk /dev/vda on /mnt/data, and hands
# over to the workload on /dev/ttyS1 (the host's control socket).
/bin/busybox mkdir -p /proc /sys /dev /mnt/touch /mnt/data /bin /sbin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for module in @MODULES@; do
  insmod "/modules/$module.ko" || echo "BLV-INIT insmod $module failed"
done
mount -t tmpfs -o size=100% tmpfs /mnt/touch
if [ -e /sys/block/vda ]; then
  for i in 1 2 3 4 5 6 7 8 9 10; do [ -b /dev/vda ] && break; sleep 0.2; done
  mount -t ext4 -o ro /dev/vda /mnt/data || echo "BLV-INIT mount /dev/vda failed"
fi
echo "BLV-INIT starting workload"
exec /workload /dev/ttyS1
