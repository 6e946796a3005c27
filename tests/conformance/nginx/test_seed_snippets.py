# ruff: noqa: RUF001, E101  (the snippets are the seeds' text as written: full-width punctuation, tabs)
"""Every nginx snippet of the seeds, as written, through `nginx -t` and `halb nginx -t`.

The seeds (shared/seeds/, Chinese course notes) configure nginx in fragments: an upstream here,
a server block there, a few http-level lines. Each fragment below is copied from its seed
(the seed file and line are in the id), with only two changes: addresses are mapped to loopback
(192.168.a.b → 127.0.a.b, 10.a.b.c → 127.a.b.c, host names in `server` lines → 127.0.0.1, so
that neither binary resolves a name) and the markdown artefacts (the leading ``) are dropped.
The fragment is placed where the seed says it goes (the http block, a server block, a
location) inside a minimal nginx.conf. Both binaries must agree: both accept it, or both refuse
it with the same message and file:line — the seeds contain mistakes (seed 002 §1-22's
`gzip_com_level`, seed 001's `weight` without a value and pseudo-config), and halb must say
about them exactly what nginx says.

What the accepted snippets do is checked by the feature conformance tests (CORS and expires in
test_filters_*, referers in test_rewrite*, upstreams in test_balancing_vs_nginx, the cache and
its purge in test_cache, the log rotation script in tests/integration/l7/test_log_rotation).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_config_errors import halb_says, nginx_says

pytestmark = pytest.mark.peer

HTTP = "events {}\nhttp {\n%s\n}\n"
SERVER = "events {}\nhttp {\nserver {\n    listen 8080;\n%s\n}\n}\n"
LOCATION = "events {}\nhttp {\nserver {\n    listen 8080;\n    location / {\n%s\n    }\n}\n}\n"
WHOLE = "%s"

# id (seed-line-what), where it goes, the snippet as the seed writes it (addresses mapped)
SNIPPETS: list[tuple[str, str, str]] = [
    ("001-211-load-balancing-sketch", WHOLE, """\
main
events{
}

#http 模块
upstream group{
    server 127.0.146.131 weight;
    server 127.0.146.132 weight;
}
#server
location /group {
    proxy_pass http://group/;
}
"""),
    ("001-256-weight", HTTP, """\
   upstream bakend {
       server 127.0.0.14 weight=10;
       server 127.0.0.15 weight=10;
       }
"""),
    ("001-262-ip-hash", HTTP, """\
   upstream bakend {
      ip_hash;
      server 127.0.0.14:88;
      server 127.0.0.15:80;
      }
"""),
    ("001-279-states", HTTP, """\
#定义负载均衡设备的 Ip及设备状态
upstream myServer {

    server 127.0.0.1:9090 down;
    server 127.0.0.1:8080 weight=2;
    server 127.0.0.1:6060;
    server 127.0.0.1:7070 backup;
}
server {
    listen 8081;
    location / {
        proxy_pass http://myServer;
    }
}
"""),
    ("001-318-ip-hash-after-servers", HTTP, """\
upstream backend {
  server 127.0.0.1:8080 ;
  server 127.0.0.1:9090 ;
   ip_hash;
}
"""),
    ("001-338-hash-forwarded-for", HTTP, """\
upstream backend {
  hash   $http_x_forwarded_for;
  server 127.0.0.1:8080;
  server 127.0.0.1:9090;
}
"""),
    ("001-340-hash-cookie", HTTP, """\
upstream backend {
  hash   $cookie_jsessionid;
  server 127.0.0.1:8080;
  server 127.0.0.1:9090;
}
"""),
    ("002-275-static-virtual-host", HTTP, """\
server {
    listen  90;
    server_name localhost;

    location / {				  #通过/请求
        root    /home/fooie-shop; #静态文件路径
        index   index.html;		  #首页设置
    }

    location /imooc {             #通过/imooc请求
        root /home;				  #静态文件路径会和请求路径进行拼接，访问/home/imooc下的文件
    }

    location /static {			  #通过/static请求
        alias /home/imooc;        #通过设置static别名，访问/home/imooc项目的文件
    }
}
"""),
    ("002-299-gzip-as-written", HTTP, """\
# 开启gzip压缩功能。目的：提高传输效率，节省带宽
gzip on;

# 限制最小压缩。小于1字节文件不会压缩
gzip_min_length 1;

# 定义压缩的级别（压缩比，文件越大，压缩越多，但是cpu使用会越多）
gzip_com_level 3;

# 定义压缩文件的类型
gzip_types text/plain application/javascript application/x-javascript text/css application/xml text/javascript application/x-httpd-php image/jpeg image/gif image/png application/json;
"""),
    ("002-299-gzip-corrected", HTTP, """\
gzip on;
gzip_min_length 1;
gzip_comp_level 3;
gzip_types text/plain application/javascript application/x-javascript text/css application/xml text/javascript application/x-httpd-php image/jpeg image/gif image/png application/json;
"""),
    ("002-318-location-rules", SERVER, """\
   location / {
   }
   location /imooc {
   }
   location = /imooc/img/face1.png {
   	root /home;
   }
   # 正则表达式。*代表不区分大小写
   location ~* \\.(GIF|png|bmp|jpg|jpeg) {
       root /home;
   }
   # 正则表达式, 区分大小写精准匹配
   location ~* \\.(GIF|png|bmp|jpg|jpeg) {
       root /home;
   }
   # ^~ 以某个字符路径开头请求
   location ^~ /imooc/img {
   	root /home;
   }
"""),
    ("002-434-cors", HTTP, """\
     server {
         listen  90;
         server_name localhost;

         # 允许跨域请求的域，*代表所有
         add_header 'Access-Control-Allow-Origin' *;
         # 允许带上cookie请求
         add_header 'Access-Control-Allow-Credentials' 'true';
         # 允许请求的方法，比如GET/POST/PUT/DELETE
         add_header 'Access-Control-Allow-Methods' *;
         # 允许请求的header
         add_header 'Access-Control-Allow-Headers' *;

         location / {
             root    /home/fooie-shop;
             index   index.html;
         }
     }
"""),
    ("002-461-referers-server", SERVER, """\
  # 对源站点验证
  valid_referers *.bravedawn.cn;
  #非法引入会进入下方判断
  if ($invalid_referer) {
  	return 404;
  }
"""),
    ("002-461-referers-location", LOCATION, """\
  valid_referers *.bravedawn.cn;
  if ($invalid_referer) {
  	return 404;
  }
"""),
    ("002-503-three-tomcats", HTTP, """\
upstream tomcats {
	server 127.0.1.173:8080;
	server 127.0.1.174:8080;
	server 127.0.1.175:8080;
}

server {
	listen 80;
	server_name www.tomcats.com;

	location / {
		proxy_pass http://tomcats;
	}
}
"""),
    ("002-536-weights", HTTP, """\
  upstream www.happymmall.com{
      server 127.0.0.1:8080 weight=15;
      server 127.0.0.1:9080 weight=10;
  }
"""),
    ("002-551-max-conns", HTTP, """\
   upstream tomcats {
   	server 127.0.156.135:8080 max_conns=2;
   	server 127.0.156.135:8088 max_conns=2;
   }

   server {
   	listen 80;
   	server_name www.tomcats.com;

   	location / {
   		proxy_pass http://tomcats;
   	}
   }
"""),
    ("002-620-expires", SERVER, """\
   location /a { expires 10s; }
   location /b { expires @22h30m; }
   location /c { expires -1h; }
   location /d { expires epoch; }
   location /e { expires off; }
   location /f { expires max; }
"""),
    ("002-690-api-regex-location", HTTP, """\
   upstream api.bravedawn.cn {
   	server 127.0.156.134:8088;
   	# server 127.0.156.135:8088;
   }

   server {
   	listen 80;
   	server_name api.bravedawn.cn;

   	location ~ {
   		proxy_pass http://api.bravedawn.cn;
   	}
   }
"""),
    ("002-722-front-virtual-hosts", HTTP, """\
   server {
   	listen 80;
   	server_name shop.bravedawn.cn;

   	location / {
   		root /usr/local/myapp/mall/Architecture-2/front/foodie-shop;
   		index index.html;
   	}
   }

   server {
   	listen 80;
   	server_name center.bravedawn.cn;

   	location / {
   		root /usr/local/myapp/mall/Architecture-2/front/foodie-center;
   		index index.html;
   	}
   }
"""),
    ("004-77-two-sites", HTTP, """\
    upstream fehu-com{
        server 127.10.10.14;
        server 127.10.10.15;
    }

    upstream fehu-cn{
        server 127.10.10.16;
    }

    server {
        listen       80;
        server_name www.fehu.com;
        location / {
                proxy_pass http://fehu-com;
                #添加反向代理，代理地址填写 upstream 声明的名字
                proxy_set_header Host $host;
                #重写请求头部，保证网站所有页面都可访问成功
        }
    }

    server {
        listen       80;
        server_name www.fehu.cn;
        location / {
                proxy_pass http://fehu-cn;
                #添加反向代理，代理地址填写 upstream 声明的名字
                proxy_set_header Host $host;
                #重写请求头部，保证网站所有页面都可访问成功
        }
    }
"""),
]

# what the seeds' mistakes must produce (pins the oracle: a changed nginx shows up here)
REFUSED = {
    "001-211-load-balancing-sketch": 'unknown directive "main"',
    "002-299-gzip-as-written": 'unknown directive "gzip_com_level"',
}

_PUBLIC = re.compile(r"(?<![\d.])(?:192\.168|10)\.\d+\.\d+")


def _write(base: Path, where: str, snippet: str) -> Path:
    (base / "logs").mkdir()
    conf = base / "nginx.conf"
    conf.write_text(f"pid {base}/nginx.pid;\n" + where % snippet)
    return conf


@pytest.mark.parametrize(("ident", "where", "snippet"), SNIPPETS, ids=[s[0] for s in SNIPPETS])
def test_seed_snippet_same_verdict_and_message(ident: str, where: str, snippet: str,
                                               nginx_binary: str, tmp_path: Path) -> None:
    assert not _PUBLIC.search(snippet), "every address is mapped to loopback"
    conf = _write(tmp_path, where, snippet)
    expected = nginx_says(nginx_binary, tmp_path, conf, "")
    if ident in REFUSED:
        assert expected is not None and expected.startswith(REFUSED[ident]), expected
    else:
        assert expected is None, f"nginx refuses the seed's snippet: {expected}"
    assert halb_says(tmp_path, conf, "") == expected
