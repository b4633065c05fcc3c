tcpdump --immediate-mode -U -i lo  -w non-amqp.pcap tcp port 8765
