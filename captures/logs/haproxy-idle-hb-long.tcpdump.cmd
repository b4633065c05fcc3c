tcpdump --immediate-mode -U -i hbs-h -w haproxy-idle-hb-long.client.pcap tcp port 5672
tcpdump --immediate-mode -U -i lo -w haproxy-idle-hb-long.broker.pcap tcp port 5672 and host 127.0.0.2
