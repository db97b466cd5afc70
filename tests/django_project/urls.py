"""URLs of the Django test project."""

from django.urls import path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("ahome/", views.ahome, name="ahome"),
    path("unnamed/", views.home),
    path("plain/", views.plain, name="plain"),
    path("missing/", views.missing, name="missing"),
    path("track/", views.track, name="track"),
    path("atrack/", views.atrack, name="atrack"),
    path("boom/", views.boom, name="boom"),
    path("aboom/", views.aboom, name="aboom"),
    path("login/", views.login_view, name="login"),
    path("alogin/", views.alogin_view, name="alogin"),
    path("pid/", views.pid, name="pid"),
    path("track-twice/", views.track_twice),
    path("identify/", views.identify_then_track),
    path("set-user/", views.set_user_then_track),
    path("own-cookie/", views.own_cookie),
    path("properties/", views.tracked_properties),
    path("aproperties/", views.atracked_properties),
    path("member-login/", views.member_login),
    path("login-tracked/", views.login_tracked),
]
