tcpdump --immediate-mode -U -i lo  -w after-handshake.pcap tcp port 5672
