tcpdump --immediate-mode -U -i lo  -w amqp10-on-5672.pcap tcp port 5672 and (tcp port 59331 or tcp port 48607)
